"""The worker service on a real mosquitto: escalations answered once each, garbage counted,
fused batches turned into a newer published model, status retained with an LWT."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from cloud_worker.service import WorkerService
from lepton_tasks import load_task
from shared.protocol.schemas import Manifest, Reply, ServiceStatus, loads

from .conftest import make_config
from .helpers import Collector, fused_batch, hard_sample

pytestmark = pytest.mark.broker


@pytest.fixture
def services():
    made: list[WorkerService] = []
    yield made
    for s in made:
        s.stop()
    assert all(not s.errors for s in made), [s.errors for s in made]


def start_worker(services, tmp_path, keydir, broker, topics, worker_id, **over) -> WorkerService:
    cfg = make_config(tmp_path, keydir, broker, topics, worker_id=worker_id, **over)
    s = WorkerService(cfg)
    services.append(s)
    s.start()
    return s


def wait_until(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def test_two_workers_answer_each_escalation_exactly_once(tmp_path, keydir, broker, topics, mqtt_factory,
                                                         registry_copy, services):
    registry_copy()
    w1 = start_worker(services, tmp_path, keydir, broker, topics, "w1", learn=False)
    # An answering-only worker needs no private key.
    w2 = start_worker(services, tmp_path, keydir, broker, topics, "w2", learn=False,
                      signing_key=str(tmp_path / "absent.key"))
    dev = mqtt_factory()
    replies = Collector()
    for d in ("cam-1", "cam-2"):
        dev.subscribe_and_wait(_flt(topics, d), 1, replies)
    stream = load_task("digits").dataset().stream[:60]
    y = load_task("digits").dataset().y

    for i, s in enumerate(stream):
        d = ("cam-1", "cam-2")[i % 2]
        dev.publish(topics.hub_infer("digits"), hard_sample("digits", np.array([s]), device=d, seq=i).encode(), qos=1,
                    response_topic=topics.reply(d), correlation_data=f"corr-{i}".encode())

    assert replies.wait_for(lambda items: len(items) >= 60, 30)
    time.sleep(0.3)  # a duplicate would arrive right behind the last reply
    corr = [m.correlation_data for m in replies.items]
    assert sorted(corr) == sorted(f"corr-{i}".encode() for i in range(60))  # each exactly once
    for m in replies.items:
        i = int(m.correlation_data.decode().split("-")[1])
        assert m.topic == str(topics.reply(("cam-1", "cam-2")[i % 2]))  # the asking device's topic
        r = loads(m.payload, Reply)
        assert r.sample == int(stream[i]) and r.task == "digits" and r.model.startswith("digits-cloud")
    right = sum(loads(m.payload, Reply).label == y[loads(m.payload, Reply).sample] for m in replies.items)
    assert right / 60 > 0.7
    workers = {loads(m.payload, Reply).worker for m in replies.items}
    assert workers == {"w1", "w2"}  # the shared subscription spread the load
    assert w1.counters.get("infer.replies") + w2.counters.get("infer.replies") == 60


def _flt(topics, device):
    return topics.reply(device)


def test_garbage_escalations_are_rejected_with_counters_and_good_ones_still_answered(
        tmp_path, keydir, broker, topics, mqtt_factory, registry_copy, services):
    registry_copy()
    w = start_worker(services, tmp_path, keydir, broker, topics, "w1", learn=False)
    dev = mqtt_factory()
    replies = Collector()
    dev.subscribe_and_wait(_flt(topics, "cam-1"), 1, replies)
    good = hard_sample("digits", np.array([5]))
    infer = topics.hub_infer("digits")
    rt = topics.reply("cam-1")

    dev.publish(infer, b"\x00garbage", qos=1, response_topic=rt, correlation_data=b"a")
    dev.publish(infer, good.encode(), qos=1, correlation_data=b"b")  # no response topic
    dev.publish(infer, good.encode(), qos=1, response_topic=rt)  # no correlation data
    dev.publish(infer, good.encode(), qos=1, response_topic=topics.manifest("digits"), correlation_data=b"c")
    dev.publish(infer, good.encode(), qos=1, response_topic=topics.reply("cam-9"), correlation_data=b"d")
    dev.publish(infer, hard_sample("digits", np.array([1]), x=np.zeros((1, 6, 64), np.float32)).encode(), qos=1,
                response_topic=rt, correlation_data=b"e")
    dev.publish(infer, good.encode(), qos=1, response_topic=rt, correlation_data=b"ok")

    assert replies.wait_for(lambda items: any(m.correlation_data == b"ok" for m in items), 20)
    assert wait_until(lambda: w.counters.total("infer.rejected.") == 6, 10), w.counters.snapshot()
    c = w.counters
    assert c.get("infer.rejected.codec.bad_magic") == 1
    assert c.get("infer.rejected.no_response_topic") == 1 and c.get("infer.rejected.no_correlation") == 1
    assert c.get("infer.rejected.bad_response_topic") == 1 and c.get("infer.rejected.device_mismatch") == 1
    assert c.get("infer.rejected.bad_shape") == 1
    assert [m.correlation_data for m in replies.items] == [b"ok"]


def test_fused_batches_through_the_broker_produce_a_better_published_model(
        tmp_path, keydir, broker, topics, mqtt_factory, registry_copy, services):
    registry_copy()
    w = start_worker(services, tmp_path, keydir, broker, topics, "w1",
                     triggers={"min_new_labels": 300, "cooldown_s": 0})
    sub = mqtt_factory()
    manifests = Collector()
    sub.subscribe_and_wait(topics.manifests("digits"), 1, manifests)
    assert manifests.wait_for(lambda items: any(m.payload for m in items), 10)  # v1 republished on start
    v1 = Manifest.model_validate_json(manifests.items[-1].payload)
    hub = mqtt_factory()
    lr = w.learners["digits"]
    stream = load_task("digits").dataset().stream

    for seq, i in enumerate(range(0, 400, 100)):
        fb = fused_batch("digits", lr.registry.get("digits", 1).onnx, 1, stream[i:i + 100], seq=seq)
        hub.publish(topics.hub_batch("digits"), fb.encode(), qos=1)
    hub.publish(topics.hub_batch("digits"), b"not a fused batch", qos=1)

    assert manifests.wait_for(lambda items: any(json.loads(m.payload)["version"] == 2 for m in items if m.payload),
                              60), w.registry.decisions("digits")
    v2 = Manifest.model_validate_json(next(m.payload for m in manifests.items
                                           if m.payload and json.loads(m.payload)["version"] == 2))
    assert v2.parent == 1 and v2.metrics["accuracy"] > v1.metrics["accuracy"]
    assert v2.artifact == str(topics.artifact("digits", 2))
    assert wait_until(lambda: w.counters.get("learn.rejected.codec.bad_magic") == 1, 10)
    assert w.counters.get("learn.trigger.labels") == 1
    assert wait_until(lambda: w.registry.decisions("digits")[-1].get("version") == 2, 10)  # logged after publishing


def test_status_is_retained_online_and_offline_after_stop(tmp_path, keydir, broker, topics, mqtt_factory,
                                                          registry_copy, services):
    registry_copy()
    w = start_worker(services, tmp_path, keydir, broker, topics, "w1", learn=False)
    sub = mqtt_factory()
    st = Collector()
    sub.subscribe_and_wait(_flt_status(topics), 1, st)
    assert st.wait_for(lambda items: any("digits.version" in loads(m.payload, ServiceStatus).gauges
                                         for m in items), 10)
    s = next(loads(m.payload, ServiceStatus) for m in st.items if "digits.version" in m.payload.decode())
    assert (s.service, s.id, s.state, s.gauges["digits.version"]) == ("worker", "w1", "online", 1.0)

    w.stop()

    assert st.wait_for(lambda items: loads(items[-1].payload, ServiceStatus).state == "offline", 10)
    late = Collector()
    mqtt_factory().subscribe_and_wait(_flt_status(topics), 1, late)
    assert late.wait_for(lambda items: bool(items), 5) and late.items[0].retain
    assert loads(late.items[0].payload, ServiceStatus).state == "offline"


def _flt_status(topics):
    return topics.cloud_status("w1")




def test_answered_escalations_wait_for_their_labels_and_become_raw_training_rows(
        tmp_path, keydir, broker, topics, mqtt_factory, registry_copy, services):
    registry_copy()
    w = start_worker(services, tmp_path, keydir, broker, topics, "w1",
                     triggers={"min_new_labels": 10_000}, buffer={"pseudo_confidence": 1.0})
    dev = mqtt_factory()
    replies = Collector()
    dev.subscribe_and_wait(_flt(topics, "cam-1"), 1, replies)
    stream = load_task("digits").dataset().stream[:5]
    lr = w.learners["digits"]

    for i, s in enumerate(stream):
        dev.publish(topics.hub_infer("digits"), hard_sample("digits", np.array([s]), seq=i).encode(), qos=1,
                    response_topic=topics.reply("cam-1"), correlation_data=b"%d" % i)
    assert replies.wait_for(lambda items: len(items) == 5, 20)
    assert wait_until(lambda: len(lr.intake.pending) == 5, 10)
    fb = fused_batch("digits", lr.deployed.onnx, 1, stream)  # the labels, joined by the bridge
    dev.publish(topics.hub_batch("digits"), fb.encode(), qos=1)

    # A counter, not the stores: the stores belong to the learner thread while it works.
    assert wait_until(lambda: w.counters.get("learn.raw.labelled") == 5, 10), w.counters.snapshot()
    assert len(lr.intake.pending) == 0 and lr.features.counts()["ground_truth"] == 5
    assert sorted(r.key for r in lr.raw.truth()) == [("cam-1", int(s)) for s in sorted(stream)]
    w.stop()
    assert (w.registry.task_dir("digits") / "buffer.npz").exists()  # saved by the learner thread on stop


def test_a_stop_while_the_cloud_step_trains_is_a_clean_exit(tmp_path, keydir, broker, topics, registry_copy):
    # A stop that lands while the learn thread refits the cloud's feature head (after a cloud fit
    # finished) abandons that fit: the worker exits cleanly, counts it, and still saves what it holds.
    from cloud_worker.models.train import Interrupted

    registry_copy()
    w = WorkerService(make_config(tmp_path, keydir, broker, topics, worker_id="w-stop")).start()
    lr = w.learners["digits"]
    entered = []

    def poll_cloud_until_stopped():
        entered.append(True)
        w.stopping.wait(30)
        raise Interrupted("stopping: training abandoned")

    lr.poll_cloud = poll_cloud_until_stopped
    try:
        assert wait_until(lambda: entered, 10)
    finally:
        w.stop()
    assert not w.errors, w.errors
    assert w.counters.get("learn.interrupted") == 1
