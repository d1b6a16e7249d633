"""Model updates over MQTT: verify, fetch, check, swap, report, roll back; every bad offer survives."""

from __future__ import annotations

import hashlib
import json

import pytest

from shared.protocol import schemas
from shared.protocol.topics import Kind
from shared.security.signing import generate_keypair, load_private
from tests.edge.conftest import Collector, clear_retained, publish_release, wait_until
from tests.edge.models import release, write_files


@pytest.fixture
def keys(tmp_path):
    generate_keypair(tmp_path / "keys" / "sign.pem", tmp_path / "keys" / "sign.pub.pem")
    generate_keypair(tmp_path / "keys" / "rogue.pem", tmp_path / "keys" / "rogue.pub.pem")
    return (load_private(tmp_path / "keys" / "sign.pem"), load_private(tmp_path / "keys" / "rogue.pem"),
            tmp_path / "keys" / "sign.pub.pem")


@pytest.fixture
def serving(make_agent, collect, mqtt_factory, topics, keys, tmp_path):
    """An agent serving signed v2 (v1 before it), frames flowing, a publisher, and a collector."""
    key, _, pub_path = keys
    agent = make_agent(start=False, source={"type": "replay", "split": "stream", "loop": True, "fps": 200.0},
                       capture={"start_after_model": True, "mode": "drop_oldest"},
                       model={"public_key": str(pub_path), "fetch_timeout_s": 1.0,
                              **write_files(release(topics, "digits", 1, key=key), tmp_path / "init")})
    col = collect(topics, agent.cfg.device)
    pub = mqtt_factory()
    agent.start()
    assert agent.wait_model(20)
    publish_release(pub, topics, release(topics, "digits", 2, key=key))
    wait_until(lambda: agent.active.version == 2, what="v2 serving")
    return agent, col, pub


def _alive(agent, col) -> None:
    frames, preds = agent.meter.frames, col.count(Kind.PRED)
    wait_until(lambda: agent.meter.frames > frames + 20 and col.count(Kind.PRED) > preds + 20, what="frames still flowing")


def _last_state(col) -> schemas.ModelState:
    return col.of(Kind.MODEL_STATE)[-1]


def _unknown_op_model() -> bytes:
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])
    y = helper.make_tensor_value_info("probs", TensorProto.FLOAT, [1, 10])
    graph = helper.make_graph([helper.make_node("NoSuchOp", ["x"], ["probs"], domain="lepton.test")], "g", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("lepton.test", 1)])
    return model.SerializeToString()


CASES = {
    "bad_hash": dict(sha256="0" * 64),
    "reference_mismatch": dict(reference_shift=0.05),
    "expired": dict(expires_in=1.0, created=1_700_000_000.0),
}


# What the retained ModelState names as the offered version, where it differs from v3.
OFFERED = {"not_newer": 1, "empty": None, "not_json": None}


@pytest.mark.parametrize("case", ["bad_hash", "reference_mismatch", "expired", "bad_signature", "unsigned", "oversized",
                                  "other_task", "not_newer", "empty", "onnx_malformed", "load_failed", "not_json",
                                  "fetch_timeout"])
def test_each_bad_offer_is_counted_reported_and_v2_keeps_serving(serving, keys, topics, case):
    # Prepare
    agent, col, pub = serving
    key, rogue, _ = keys
    v = 3
    reason = "bad_signature" if case == "unsigned" else case
    counter = f"model.rejected.{reason}"
    before = agent.counters.get(counter)
    states_before = len(col.of(Kind.MODEL_STATE))
    # Execute
    if case in CASES:
        publish_release(pub, topics, release(topics, "digits", v, key=key, **CASES[case]))
    elif case == "bad_signature":
        publish_release(pub, topics, release(topics, "digits", v, key=rogue))
    elif case == "unsigned":  # an agent with a public_key takes no manifest without a signature
        publish_release(pub, topics, release(topics, "digits", v))
    elif case == "oversized":
        rel = release(topics, "digits", v, key=key)
        bigger = rel.onnx + b"\0" * 64
        publish_release(pub, topics, release(topics, "digits", v, key=key, onnx_blob=rel.onnx), artifact=bigger)
    elif case == "other_task":
        publish_release(pub, topics, release(topics, "digits", v, key=key, task_field="health"))
    elif case == "not_newer":
        publish_release(pub, topics, release(topics, "digits", 1, key=key))
    elif case == "empty":
        clear_retained(pub, topics.manifest("digits"))
    elif case in ("onnx_malformed", "load_failed"):
        # junk fails the ONNX guard; a well-formed model with an unknown operator fails onnxruntime
        junk = b"this is not an onnx model" * 10 if case == "onnx_malformed" else _unknown_op_model()
        publish_release(pub, topics, release(topics, "digits", v, key=key, onnx_blob=junk,
                                             sha256=hashlib.sha256(junk).hexdigest()))
    elif case == "not_json":
        pub.publish(topics.manifest("digits"), b"\x00\xffgarbage{", qos=1)
    elif case == "fetch_timeout":
        rel = release(topics, "digits", v, key=key)
        pub.publish(topics.manifest("digits"), rel.wire, qos=1)  # manifest, but no artifact anywhere
    # Assert
    wait_until(lambda: agent.counters.get(counter) > before, what=counter)
    assert agent.active.version == 2
    _alive(agent, col)
    if case != "expired":  # every rejection is the latest retained state, a replay or a cleared topic too
        offered = OFFERED.get(case, v)
        st = wait_until(lambda: len(col.of(Kind.MODEL_STATE)) > states_before and (s := _last_state(col)).state ==
                        "rejected" and s.offered == offered and s, what="rejected state")
        assert st.version == 2 and st.reason.startswith(f"{reason}: ")
    if case == "expired":
        st = wait_until(lambda: (s := _last_state(col)).state == "stale" and s, what="stale state")
        assert st.version == 2 and agent.counters.get("model.stale") >= 1
    assert agent.store.state.highest == 2 and agent.store.state.current == 2


def test_garbage_on_every_subscribed_topic_is_counted_and_harmless(serving, topics):
    agent, col, pub = serving
    dev = agent.cfg.device
    junk = [b"", b"\xff\xfe", b"{}", b'{"schema":1,"kind":"reply"}', b"[" * 5000, json.dumps({"schema": 2}).encode()]
    for payload in junk:
        pub.publish(topics.manifest("digits"), payload, qos=1)
        pub.publish(topics.artifact("digits", 9), payload or b"x", qos=1)
        pub.publish(topics.reply(dev), payload, qos=1)
        for name in ("rollback", "thresholds", "rebirth"):
            pub.publish(topics.cmd(dev, name), payload, qos=1)
    # A well-formed command on the wrong leaf, and a reply nobody asked for.
    pub.publish(topics.cmd(dev, "rebirth"), schemas.dumps(schemas.Command(name="rollback", ts=0.0)), qos=1)
    pub.publish(topics.reply(dev), schemas.dumps(schemas.Reply(task="digits", sample=123, label=1, confidence=0.5,
                                                               model="m", worker="w", ts=0.0)), qos=1)
    wait_until(lambda: agent.counters.total("rejected.cmd.") >= 3 * len(junk)
               and agent.counters.total("rejected.reply.") >= len(junk)
               and agent.counters.total("model.rejected.") >= len(junk)
               and agent.counters.get("reply.late") >= 1
               and agent.counters.get("cmd.rejected.name_mismatch") >= 1, what="garbage counted")
    _alive(agent, col)
    assert agent.active.version == 2 and agent.counters.get("model.rolled_back") == 0
    assert agent.counters.get("model.errors") == 0


def test_rollback_reverts_to_previous_and_newer_versions_still_load(serving, keys, topics):
    agent, col, pub = serving
    key = keys[0]
    pub.publish(topics.cmd(agent.cfg.device, "rollback"), schemas.dumps(schemas.Command(name="rollback", ts=0.0)),
                qos=1)
    st = wait_until(lambda: (s := _last_state(col)).state == "rolled_back" and s, what="rolled back")
    assert st.version == 1 and agent.active.version == 1 and agent.store.state.highest == 2
    _alive(agent, col)
    # A second rollback has nothing to go back to.
    pub.publish(topics.cmd(agent.cfg.device, "rollback"), schemas.dumps(schemas.Command(name="rollback", ts=0.0)),
                qos=1)
    wait_until(lambda: agent.counters.get("cmd.rollback.no_previous") == 1, what="no previous")
    publish_release(pub, topics, release(topics, "digits", 3, key=key))
    wait_until(lambda: agent.active.version == 3, what="v3 serving")
    assert [v for _, v in agent.swaps] == [1, 2, 1, 3]


def test_thresholds_and_rebirth_commands(serving, topics):
    agent, col, pub = serving
    dev = agent.cfg.device
    cmd = schemas.Command(name="thresholds", args={"threshold": 0.25, "audit_rate": 0.0}, ts=0.0)
    pub.publish(topics.cmd(dev, "thresholds"), schemas.dumps(cmd), qos=1)
    wait_until(lambda: agent.decider.policy.threshold == 0.25 and agent.decider.audit_rate == 0.0, what="applied")
    bad = schemas.Command(name="thresholds", args={"threshold": 3.0}, ts=0.0)
    pub.publish(topics.cmd(dev, "thresholds"), schemas.dumps(bad), qos=1)
    wait_until(lambda: agent.counters.get("cmd.rejected.bad_args") == 1, what="bad args refused")
    assert agent.decider.policy.threshold == 0.25
    n_status = col.count(Kind.STATUS)
    pub.publish(topics.cmd(dev, "rebirth"), schemas.dumps(schemas.Command(name="rebirth", ts=0.0)), qos=1)
    wait_until(lambda: col.count(Kind.STATUS) > n_status, what="status republished")
    assert col.of(Kind.STATUS)[-1].models == {"digits": 2}


def test_restart_serves_stored_model_and_refuses_downgrade(make_agent, collect, mqtt_factory, topics, tmp_path):
    # Prepare: an agent that accepted v2, then stopped
    pub = mqtt_factory()
    first = make_agent(source={"type": "replay", "loop": True, "fps": 100.0})
    publish_release(pub, topics, release(topics, "digits", 2))
    wait_until(lambda: first.active is not None and first.active.version == 2, what="v2")
    first.stop()
    # Execute: a new process on the same state dir, while a v1 manifest is retained
    publish_release(pub, topics, release(topics, "digits", 1))
    again = make_agent(source={"type": "replay", "loop": True, "fps": 100.0}, state_dir=str(first.cfg.state_dir))
    # Assert
    wait_until(lambda: again.counters.get("model.rejected.not_newer") >= 1, what="downgrade refused")
    assert again.active.version == 2 and again.boot > first.boot


def test_serving_model_whose_manifest_expires_is_reported_stale_and_kept(make_agent, collect, topics, tmp_path):
    agent = make_agent(start=False, source={"type": "replay", "loop": True, "fps": 100.0},
                       capture={"start_after_model": True},
                       model=write_files(release(topics, "digits", 1, expires_in=4.0), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    st = wait_until(lambda: (s := col.of(Kind.MODEL_STATE)) and s[-1].state == "stale" and s[-1], what="stale")
    assert st.version == 1 and agent.active.version == 1 and agent.counters.get("model.stale") == 1
    _alive(agent, col)


def _publish_artifact(pub, topics, version: int, blob: bytes) -> None:
    import threading

    done = threading.Event()
    pub.publish(topics.artifact("digits", version), blob, qos=1, retain=True, on_ack=lambda rc: done.set())
    assert done.wait(10)


@pytest.mark.parametrize("bad", ["bad_hash", "oversized", "fetch_timeout"])
@pytest.mark.parametrize("republish_manifest", [False, True])
def test_a_bad_artifact_does_not_block_the_genuine_one(serving, keys, topics, bad, republish_manifest):
    # Prepare: v3 is signed; someone who can publish on the artifact topic puts other bytes there first
    agent, col, pub = serving
    key = keys[0]
    rel = release(topics, "digits", 3, key=key)
    forged = {"bad_hash": rel.onnx[:-8] + b"\0" * 8, "oversized": rel.onnx + b"\0" * 64}.get(bad)
    if forged is not None:
        _publish_artifact(pub, topics, 3, forged)
    else:
        clear_retained(pub, topics.artifact("digits", 3))
    pub.publish(topics.manifest("digits"), rel.wire, qos=1, retain=True)
    wait_until(lambda: agent.counters.get(f"model.rejected.{bad}") >= 1, what=bad)
    assert agent.active.version == 2
    # Execute: the genuine artifact is published again (with or without its manifest again)
    if republish_manifest:
        publish_release(pub, topics, rel)
    else:
        _publish_artifact(pub, topics, 3, rel.onnx)
    # Assert: it is tried and served, without a restart
    wait_until(lambda: agent.active.version == 3, what="v3 serving after the genuine artifact")
    assert agent.counters.get("model.ignored.known_bad") == 0
    st = wait_until(lambda: (s := _last_state(col)).state == "loaded" and s, what="loaded state")
    assert st.version == 3


def test_bad_artifacts_are_tried_a_bounded_number_of_times(serving, keys, topics):
    agent, col, pub = serving
    key = keys[0]
    limit = agent.cfg.model.artifact_attempts
    rel = release(topics, "digits", 3, key=key)
    _publish_artifact(pub, topics, 3, rel.onnx[:-8] + b"\1" * 8)
    pub.publish(topics.manifest("digits"), rel.wire, qos=1, retain=True)
    for i in range(limit + 3):  # each forgery differs: each would be new bytes
        wait_until(lambda i=i: agent.counters.get("model.rejected.bad_hash") >= min(i + 1, limit), what="tried")
        _publish_artifact(pub, topics, 3, rel.onnx[:-8] + bytes([i + 2]) * 8)
    wait_until(lambda: agent.counters.get("model.artifact_gave_up") == 1, what="gave up")
    _alive(agent, col)
    assert agent.counters.get("model.rejected.bad_hash") == limit
    assert agent.counters.get("model.artifact_retry") == limit - 1
    assert agent.active.version == 2


def _retained_state(mqtt_factory, topics, device: str) -> schemas.ModelState:
    """What a newcomer (a dashboard, `lepton monitor`) is told first: the retained ModelState."""
    col = Collector(topics)
    mqtt_factory().subscribe_and_wait(topics.model_state(device), 1, col)
    return wait_until(lambda: col.of(Kind.MODEL_STATE) and col.of(Kind.MODEL_STATE)[-1], what="retained state")


def test_the_retained_state_names_the_latest_rejection_a_replay_included(serving, keys, topics, mqtt_factory):
    # Prepare: a bad signature was the last news
    agent, col, pub = serving
    key, rogue, _ = keys
    publish_release(pub, topics, release(topics, "digits", 3, key=rogue))
    wait_until(lambda: _last_state(col).reason.startswith("bad_signature"), what="bad signature reported")
    # Execute: then someone replays v1's genuine, signed manifest
    pub.publish(topics.manifest("digits"), release(topics, "digits", 1, key=key).wire, qos=1, retain=True)
    wait_until(lambda: agent.counters.get("model.rejected.not_newer") >= 1, what="replay refused")
    # Assert
    st = _retained_state(mqtt_factory, topics, agent.cfg.device)
    assert (st.state, st.version, st.offered) == ("rejected", 2, 1)
    assert st.reason == "not_newer: version 1 <= highest accepted 2"


def test_after_a_rollback_the_manifest_rolled_back_from_is_not_a_rejection(serving, topics, keys, mqtt_factory):
    # Prepare: rolled back from v2 to v1
    agent, col, pub = serving
    pub.publish(topics.cmd(agent.cfg.device, "rollback"), schemas.dumps(schemas.Command(name="rollback", ts=0.0)),
                qos=1)
    wait_until(lambda: _last_state(col).state == "rolled_back", what="rolled back")
    # Execute: v2's retained manifest comes again (as it does on every reconnect)
    pub.publish(topics.manifest("digits"), release(topics, "digits", 2, key=keys[0]).wire, qos=1, retain=True)
    wait_until(lambda: agent.counters.get("model.manifest.rolled_back_from") >= 1, what="v2 manifest seen")
    # Assert
    assert agent.counters.get("model.rejected.not_newer") == 0 and agent.active.version == 1
    st = _retained_state(mqtt_factory, topics, agent.cfg.device)
    assert (st.state, st.version) == ("rolled_back", 1)
