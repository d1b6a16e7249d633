"""End to end on a real broker: video file in, predictions out; hot reload under load; joint inference."""

from __future__ import annotations

import cv2
import numpy as np

from lepton_tasks import load_task
from lepton_tasks.packs.digits import render_digit
from shared.protocol import schemas
from shared.protocol.containers import HardSample
from shared.protocol.topics import Kind
from tests.edge.conftest import preds_by_sample, publish_release, wait_until
from tests.edge.models import release, write_files


def test_video_file_round_trip_is_classified_well_above_chance(make_agent, collect, topics, tmp_path):
    # Prepare: real digits rendered as camera frames, written as MJPG and read back through cv2
    task = load_task("digits")
    ds = task.dataset()
    idx = ds.stream[:150]
    path = tmp_path / "front.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (64, 64))
    for i in idx:
        w.write(render_digit(_digit8(i)))
    w.release()
    agent = make_agent(start=False, source={"type": "video", "path": str(path)},
                       capture={"start_after_model": True},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    # Execute
    agent.start()
    wait_until(agent.source_done.is_set, what="end of video")
    preds = wait_until(lambda: (p := col.of(Kind.PRED)) and len(p) == len(idx) and p, what="all predictions")
    # Assert
    assert agent.counters.get("frames.no_model") == 0
    truth = {f"front.avi#{n}": int(ds.y[i]) for n, i in enumerate(idx)}
    acc = np.mean([p.label == truth[p.ref] for p in preds])
    assert acc > 0.6, acc  # chance is 0.1
    assert {p.model_version for p in preds} == {1}


def _digit8(i: int) -> np.ndarray:
    from sklearn.datasets import load_digits

    return load_digits().images[i]


def test_hot_reload_under_load_every_frame_one_prediction_one_switch(make_agent, collect, mqtt_factory, topics,
                                                                      tmp_path):
    # Prepare: v1 from disk, frames as fast as the pipeline goes, some escalations with a short deadline
    agent = make_agent(start=False, source={"type": "replay", "split": "all", "loop": True},
                       capture={"start_after_model": True, "queue_size": 64},
                       decision={"policy": {"type": "max_prob", "threshold": 0.5}, "reply_deadline_s": 0.3,
                                 "rate_limit": 1000.0, "burst": 1000},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    pub = mqtt_factory()
    v2 = release(topics, "digits", 2)
    # Execute: publish v2 while frames stream through; stop once v2 has served a while
    agent.start()
    wait_until(lambda: col.count(Kind.PRED) >= 200, what="first predictions")
    publish_release(pub, topics, v2)
    wait_until(lambda: sum(p.model_version == 2 for p in col.of(Kind.PRED)) >= 300, timeout=60, what="v2 serving")
    # Nobody answers escalations here, so each one waits out its deadline: stop only once one has.
    # (On a fast machine the 500 predictions above take less than the 0.3 s deadline.)
    wait_until(lambda: agent.counters.get("escalation.deadline") > 0, timeout=30, what="an escalation deadline")
    agent.stop()  # pending escalations are resolved (locally) and published before the agent disconnects
    n = agent.meter.frames
    wait_until(lambda: col.count(Kind.PRED) >= n, timeout=30, what="a prediction for every frame")
    # Assert
    by_sample = preds_by_sample(col)
    assert len(by_sample) == n and all(len(v) == 1 for v in by_sample.values())
    versions = [by_sample[s][0].model_version for s in sorted(by_sample)]
    switches = [i for i in range(1, n) if versions[i] != versions[i - 1]]
    assert len(switches) == 1 and versions[0] == 1 and versions[-1] == 2, (switches, versions[:3], versions[-3:])
    assert switches[0] >= 200  # the swap happened under load, not before it
    assert [v for _, v in agent.swaps] == [1, 2]
    for bad in ("frames.inference_error", "frames.bad_input", "frames.no_model", "model.errors"):
        assert agent.counters.get(bad) == 0, bad
    # Every escalation ended in exactly one way (none answered: deadline, evicted or at the stop).
    c = agent.counters
    assert c.get("escalation.deadline") > 0
    assert agent.meter.escalated == c.get("escalation.deadline") + c.get("escalation.evicted") + c.get("escalation.at_stop")
    assert sum(p.escalated for v in by_sample.values() for p in v) == agent.meter.escalated


def test_joint_inference_uses_cloud_reply_within_deadline_else_local(make_agent, collect, mqtt_factory, topics,
                                                                      tmp_path):
    # Prepare: every sample is uncertain; a fake cloud answers only even sample ids, with label 7
    n = 40
    agent = make_agent(start=False, source={"type": "replay", "split": "stream", "loop": False, "limit": n},
                       capture={"start_after_model": True},
                       decision={"policy": {"type": "max_prob", "threshold": 1.0}, "reply_deadline_s": 1.0,
                                 "rate_limit": 1000.0, "burst": 1000, "audit_rate": 0.0},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    cloud = mqtt_factory()
    seen: list[HardSample] = []

    def answer(msg):
        hs = HardSample.decode(msg.payload)
        seen.append(hs)
        if int(hs.sample[0]) % 2 == 0:
            reply = schemas.Reply(task="digits", sample=int(hs.sample[0]), label=7, confidence=0.99, model="big",
                                  worker="w1", ts=0.0)
            cloud.publish(topics.reply(agent.cfg.device), schemas.dumps(reply), qos=1,
                          correlation_data=msg.correlation_data)

    cloud.subscribe_and_wait(topics.edge_kind(Kind.HARD, agent.cfg.device), 1, answer)
    col = collect(topics, agent.cfg.device)
    # Execute
    agent.start()
    wait_until(lambda: col.count(Kind.PRED) >= n, what="all predictions")
    # Assert
    preds = preds_by_sample(col)
    assert len(preds) == n and all(len(v) == 1 for v in preds.values())
    for sample, (p,) in preds.items():
        assert p.escalated
        if sample % 2 == 0:
            assert (p.source, p.label, p.confidence) == ("cloud", 7, 0.99)
        else:
            assert p.source == "edge"
    assert len(seen) == n and seen[0].x.shape == (1, 1, 8, 8)
    msgs = col.msgs(Kind.HARD)
    assert msgs[0].response_topic == str(topics.reply(agent.cfg.device)) and msgs[0].correlation_data
    assert agent.counters.get("reply.used") == n // 2


def test_telemetry_status_and_feature_batches(make_agent, collect, topics, tmp_path):
    agent = make_agent(start=False, source={"type": "replay", "split": "stream", "loop": False, "limit": 64},
                       capture={"start_after_model": True}, features={"batch_size": 16, "float16": True},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    wait_until(lambda: col.count(Kind.FEAT) >= 4 and col.count(Kind.TELEMETRY) >= 1, what="features, telemetry")
    wait_until(lambda: col.of(Kind.TELEMETRY)[-1].frames == 64, what="telemetry of all frames")
    feats = col.of(Kind.FEAT)
    assert [len(f.sample) for f in feats[:4]] == [16] * 4 and feats[0].feat.dtype == np.float16
    assert [f.seq for f in feats] == sorted(f.seq for f in feats)
    tele = col.of(Kind.TELEMETRY)[-1]
    assert tele.uplink_bytes > 0 and tele.raw_bytes > 0 and tele.latency_ms_p50 > 0
    status = col.of(Kind.STATUS)
    assert status[0].state == "online" and status[-1].models == {"digits": 1}
    events = col.of(Kind.EVENT)
    assert all(e.name == "0" for e in events)
    agent.stop()
    wait_until(lambda: col.of(Kind.STATUS)[-1].state == "offline", what="death message")


def test_a_cloud_that_defers_leaves_the_edge_decision_standing(make_agent, collect, mqtt_factory, topics, tmp_path):
    # Prepare: every sample escalates; the cloud answers, but says it is no better here (defer)
    n = 20
    agent = make_agent(start=False, source={"type": "replay", "split": "stream", "loop": False, "limit": n},
                       capture={"start_after_model": True},
                       decision={"policy": {"type": "max_prob", "threshold": 1.0}, "reply_deadline_s": 2.0,
                                 "rate_limit": 1000.0, "burst": 1000, "audit_rate": 0.0},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    cloud = mqtt_factory()

    def answer(msg):
        hs = HardSample.decode(msg.payload)
        reply = schemas.Reply(task="digits", sample=int(hs.sample[0]), label=7, confidence=0.99, model="weak",
                              worker="w1", defer=True, ts=0.0)
        cloud.publish(topics.reply(agent.cfg.device), schemas.dumps(reply), qos=1,
                      correlation_data=msg.correlation_data)

    cloud.subscribe_and_wait(topics.edge_kind(Kind.HARD, agent.cfg.device), 1, answer)
    col = collect(topics, agent.cfg.device)
    # Execute
    agent.start()
    wait_until(lambda: col.count(Kind.PRED) >= n, what="all predictions")
    # Assert: answered in time, yet the edge's own label stands
    preds = preds_by_sample(col)
    assert all(p.escalated and p.source == "edge" for (p,) in preds.values())
    assert agent.counters.get("reply.deferred") == n and agent.counters.get("reply.used") == 0
