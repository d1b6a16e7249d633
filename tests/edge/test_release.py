"""Staged rollout at the agent, over a real broker: the signed release says which version this device runs.

A canary takes the candidate from its own version topic and goes back to control from disk without
dropping a frame; a control device never takes the candidate, not even from the fleet's manifest
topic; an agent that comes online mid-rollout gets its stage's version; a pin holds a device on an
older version; and every hostile or stale release is a typed rejection with a counter.
"""

from __future__ import annotations

import json
import threading
import time

import pytest

from shared.protocol import schemas
from shared.protocol.schemas import Pin, Release, ReleasePlan, Stage
from shared.protocol.topics import Kind
from shared.security.signing import generate_keypair, load_private, sign_msg
from tests.edge.conftest import clear_retained, preds_by_sample, publish_release, wait_until
from tests.edge.models import release, write_files


@pytest.fixture
def keys(tmp_path):
    generate_keypair(tmp_path / "keys" / "sign.pem", tmp_path / "keys" / "sign.pub.pem")
    generate_keypair(tmp_path / "keys" / "rogue.pem", tmp_path / "keys" / "rogue.pub.pem")
    return load_private(tmp_path / "keys" / "sign.pem"), load_private(tmp_path / "keys" / "rogue.pem"), \
        tmp_path / "keys" / "sign.pub.pem"


def rel(seq: int, *, stage_groups: list[str] | None = None, state: str = "running", candidate: int = 3,
        control: int = 2, restored: int | None = None, pins: list[Pin] | None = None, task: str = "digits") -> Release:
    plan = ReleasePlan(stages=[Stage(groups=stage_groups or ["ring:canary"]), Stage(share=100)])
    return Release(task=task, release=f"digits-v{candidate}", seq=seq, state=state, candidate=candidate,
                   control=control, restored=restored, stage=0, plan=plan, pins=pins or [], started=1.0,
                   updated=float(seq))


def sign_dict(obj: dict, key) -> bytes:
    """Sign any JSON object the way the worker signs (a valid signature over content the schema refuses)."""
    import base64
    import json

    from shared.security.signing import key_id

    body = {**obj, "key_id": key_id(key.public_key())}
    body.pop("signature", None)
    body["signature"] = base64.b64encode(key.sign(schemas.canonical(body))).decode()
    return json.dumps(body).encode()


def send(client, topic, payload: bytes, retain: bool = True) -> None:
    done = threading.Event()
    client.publish(topic, payload, qos=1, retain=retain, on_ack=lambda rc: done.set())
    assert done.wait(10)


def publish_version(client, topics, r) -> None:
    """What the worker does for a version a release assigns: the artifact, then its own manifest topic."""
    send(client, topics.artifact("digits", r.version), r.onnx)
    send(client, topics.model_version("digits", r.version), r.wire)


@pytest.fixture
def fleet(make_agent, collect, mqtt_factory, topics, keys, tmp_path):
    """v1 at boot, then v2 on the fleet manifest; v3 (the candidate) on its own version topic only."""
    key, _, pub_path = keys
    pub = mqtt_factory()
    versions = {v: release(topics, "digits", v, key=key) for v in (1, 2, 3)}
    init = write_files(versions[1], tmp_path / "init")

    def agent(groups: list[str], **over):
        a = make_agent(start=False, groups=groups,
                       source={"type": "replay", "split": "stream", "loop": True, "fps": 200.0},
                       model={"public_key": str(pub_path), "fetch_timeout_s": 2.0, **init}, **over)
        col = collect(topics, a.cfg.device)
        a.start()
        assert a.wait_model(20)
        return a, col

    publish_release(pub, topics, versions[2])
    publish_version(pub, topics, versions[3])
    return agent, pub, versions, key


def _one_prediction_per_frame(agent, col) -> None:
    by = wait_until(lambda: (b := preds_by_sample(col)) and len(b) > 50 and b, what="predictions")
    assert all(len(ps) == 1 for ps in by.values())
    assert agent.counters.get("frames.inference_error") == 0 and agent.counters.get("frames.bad_input") == 0


def test_a_canary_runs_the_candidate_then_goes_back_to_control_from_disk(fleet, topics):
    agent_of, pub, versions, key = fleet
    canary, col = agent_of(["ring:canary", "site:lab"])
    wait_until(lambda: canary.active.version == 2, what="v2 from the fleet manifest")
    # Execute: the release puts ring:canary on v3
    send(pub, topics.release("digits"), sign_msg(rel(10), key))
    wait_until(lambda: canary.active.version == 3, what="the candidate on the canary")
    assert canary.store.state.highest == 3
    st = col.of(Kind.MODEL_STATE)[-1]
    assert st.state == "loaded" and "release digits-v3" in st.reason
    # the candidate's manifest on the fleet topic too (what a promotion publishes) is not loaded again
    current = canary.counters.get("model.manifest.current")
    publish_release(pub, topics, versions[3])
    wait_until(lambda: canary.counters.get("model.manifest.current") > current, what="v3 recognised as serving")
    assert [v for _, v in canary.swaps].count(3) == 1
    publish_release(pub, topics, versions[2])  # the fleet back on control, as during the stage
    # ... and is rolled back: control again, from disk, although v3 is the highest it accepted
    frames = canary.meter.frames
    send(pub, topics.release("digits"), sign_msg(rel(11, state="rolled_back"), key))
    wait_until(lambda: canary.active.version == 2, what="back on control")
    # Assert
    assert canary.counters.get("model.release_switch") == 1 and canary.store.state.highest == 3
    assert [v for _, v in canary.swaps][-3:] == [2, 3, 2]
    wait_until(lambda: canary.meter.frames > frames + 50, what="frames after the switch")
    _one_prediction_per_frame(canary, col)
    status = col.of(Kind.STATUS)[-1]
    assert status.groups == ["ring:canary", "site:lab"] and 0 <= status.ring < 100


def test_a_control_device_never_takes_the_candidate(fleet, topics):
    agent_of, pub, versions, key = fleet
    ctrl, col = agent_of(["site:lab"])
    wait_until(lambda: ctrl.active.version == 2, what="v2")
    send(pub, topics.release("digits"), sign_msg(rel(10), key))
    wait_until(lambda: ctrl.counters.get("release.accepted") == 1, what="release taken")
    # Execute: even the candidate's manifest on the fleet's topic does not move it
    publish_release(pub, topics, versions[3])
    # Assert
    wait_until(lambda: ctrl.counters.get("model.ignored.not_in_stage") >= 1, what="candidate ignored")
    assert ctrl.active.version == 2 and ctrl.store.state.highest == 2
    # a version newer than the release's (published to the whole fleet outside it) supersedes it
    publish_release(pub, topics, release(topics, "digits", 4, key=key))
    wait_until(lambda: ctrl.active.version == 4, what="v4 supersedes the release")


def test_agents_that_come_online_mid_rollout_get_their_stage_version(fleet, topics, make_agent):
    agent_of, pub, versions, key = fleet
    send(pub, topics.release("digits"), sign_msg(rel(10), key))
    canary, _ = agent_of(["ring:canary"])
    ctrl, _ = agent_of([])
    wait_until(lambda: canary.active.version == 3 and ctrl.active.version == 2, what="each on its stage's version")
    # Execute: the canary stops; a rollback it took to disk just before a crash must hold at the next boot,
    # before (and without) the broker's retained release
    canary.stop()
    (canary.cfg.model_dir / "release.json").write_bytes(sign_msg(rel(11, state="rolled_back"), key))
    clear_retained(pub, topics.release("digits"))
    again = make_agent(start=True, groups=["ring:canary"], state_dir=str(canary.cfg.state_dir),
                       source={"type": "replay", "split": "stream", "loop": True, "fps": 200.0},
                       model=dict(canary.cfg.model))
    # Assert
    wait_until(lambda: again.active is not None and again.active.version == 2, what="control after the reboot")
    # (it went v1 -> v3 directly, so v2 is not on its disk: it takes v2 from the broker, below its highest)
    assert [v for _, v in again.swaps] == [3, 2] and again.store.state.highest == 3


def test_a_pin_holds_a_device_on_an_older_version_than_it_ever_accepted(fleet, topics):
    agent_of, pub, versions, key = fleet
    dev, _ = agent_of(["ring:canary"])
    send(pub, topics.release("digits"), sign_msg(rel(10), key))
    wait_until(lambda: dev.active.version == 3, what="v3")
    publish_version(pub, topics, versions[1])
    # Execute
    pinned = rel(11, pins=[Pin(group=f"device:{dev.cfg.device}", version=1)])
    send(pub, topics.release("digits"), sign_msg(pinned, key))
    # Assert
    wait_until(lambda: dev.active.version == 1, what="pinned to v1")
    assert dev.store.state.highest == 3
    publish_release(pub, topics, release(topics, "digits", 5, key=key))  # a newer fleet version does not move it
    wait_until(lambda: dev.counters.get("model.ignored.not_in_stage") >= 1, what="v5 ignored by the pinned device")
    assert dev.active.version == 1


DEEP = b"[" * 30000 + b"]" * 30000


@pytest.mark.parametrize("case, reason", [
    ("unsigned", "bad_signature"), ("rogue", "bad_signature"), ("tampered", "bad_signature"),
    ("other_task", "other_task"), ("replayed", "not_newer"), ("garbage", "not_json"), ("deep", "not_json"),
    ("huge_number", "not_json"), ("oversized", "oversized"), ("invalid", "invalid"), ("wrong_kind", "wrong_kind"),
    ("schema_9", "unknown_schema_version"),
])
def test_hostile_or_stale_releases_are_typed_rejections_and_change_nothing(fleet, topics, keys, case, reason):
    agent_of, pub, versions, key = fleet
    _, rogue, _ = keys
    dev, col = agent_of(["ring:canary"])
    send(pub, topics.release("digits"), sign_msg(rel(10, state="promoted", candidate=2, control=1), key))
    wait_until(lambda: dev.counters.get("release.accepted") == 1 and dev.active.version == 2, what="release taken")
    good = rel(20)  # would move the canary to v3
    payload = {
        "unsigned": schemas.dumps(good),
        "rogue": sign_msg(good, rogue),
        "tampered": sign_msg(good, key).replace(b'"seq":20', b'"seq":21'),
        "other_task": sign_msg(rel(20, task="health"), key),
        "replayed": sign_msg(rel(9), key),
        "garbage": b"\xff\x00{not json",
        "deep": DEEP,
        "huge_number": b'{"schema":1,"kind":"release","seq":' + b"9" * 5000 + b"}",
        "oversized": b" " * (schemas.MAX_JSON_BYTES + 1),
        "invalid": sign_dict({**json.loads(schemas.dumps(good)), "state": "everywhere"}, key),
        "wrong_kind": schemas.dumps(schemas.Command(name="rebirth", ts=0.0)),
        "schema_9": sign_msg(good, key).replace(b'"schema":1', b'"schema":9'),
    }[case]
    # Execute
    send(pub, topics.release("digits"), payload)
    # Assert
    wait_until(lambda: dev.counters.get(f"release.rejected.{reason}") == 1, what=f"release.rejected.{reason}")
    time.sleep(0.3)
    assert dev.active.version == 2 and dev.models.gate.release.seq == 10
    frames = dev.meter.frames
    wait_until(lambda: dev.meter.frames > frames + 20, what="still serving")
