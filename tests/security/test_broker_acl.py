"""The generated ACL, enforced by a real mosquitto running secure.conf: allowed works, denied is denied.

mosquitto 2.0's acl_file refuses PUBLISH with PUBACK 0x87 and never *delivers* a message a
client may not read; it does not refuse SUBSCRIBE (the SUBACK grants the QoS), so for
subscriptions the assertion is that nothing arrives, checked behind a barrier message.
"""

from __future__ import annotations

import threading

import pytest

from shared.acl import SERVICE_ROLES, Access, allowed
from shared.topics import SPEC_BY_KIND, TOPIC_SPECS, Filter, Kind, Topic

from .conftest import ROOT, SecureEnv, publish_ack, subscribe

pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87
SERVICES = [f"{r.value}_1" for r in SERVICE_ROLES]
WRITERS = ["d1", *SERVICES]
READERS = ["d1", "d2", *SERVICES]


def sample(kind: Kind, device: str) -> Topic:
    fill = {"{device}": device, "{version}": "3"}
    parts = [fill.get(p, "x") if p.startswith("{") else p for p in SPEC_BY_KIND[kind].pattern.split("/")]
    return Topic(f"{ROOT}/{'/'.join(parts)}")


def test_device_cannot_publish_into_another_device_tree_and_nobody_sees_it(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, observer = connect("d1"), connect("monitor_1")
    inbox, _ = subscribe(observer, t.all())
    # Execute
    denied = [publish_ack(d1, topic) for topic in (t.status("d2"), t.feat("d2", "cam"), t.event("d2", "cam"))]
    own = publish_ack(d1, t.status("d1"), b"mine")
    # Assert
    assert denied == [NOT_AUTHORIZED] * 3
    assert own < 0x80
    assert inbox.wait_for(lambda ms: any(m.topic == str(t.status("d1")) for m in ms))
    assert inbox.topics() == {str(t.status("d1"))}, "the observer saw a message the broker should have refused"
    assert d1.counters.snapshot().get(f"mqtt.publish_denied.{NOT_AUTHORIZED:#x}") == 3


def test_device_cannot_publish_a_model_a_reply_a_command_or_a_label(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, late = connect("d1"), connect("monitor_2")
    # Execute
    codes = {
        "manifest": publish_ack(d1, t.manifest("digits"), b"{}", retain=True),
        "artifact": publish_ack(d1, t.artifact("digits", 99), b"onnx", retain=True),
        "reply": publish_ack(d1, t.reply("d1"), b"{}"),
        "cmd": publish_ack(d1, t.cmd("d2", "rollback"), b"{}"),
        "label": publish_ack(d1, t.label("d1", "cam"), b"{}"),
        "hub": publish_ack(d1, t.hub_batch("digits"), b"x"),
    }
    inbox, _ = subscribe(late, Filter(f"{ROOT}/model/#"))  # would get any retained model at once
    barrier = connect("worker_1")
    publish_ack(barrier, t.manifest("barrier"), b"b", retain=False)
    # Assert
    assert codes == dict.fromkeys(codes, NOT_AUTHORIZED)
    assert inbox.wait_for(lambda ms: any(m.topic == str(t.manifest("barrier")) for m in ms))
    assert inbox.topics() == {str(t.manifest("barrier"))}, "a device's retained model reached a subscriber"


def test_device_subscriptions_outside_its_own_topics_receive_nothing(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, d2, worker = connect("d1"), connect("d2"), connect("worker_1")
    spy_all, codes_all = subscribe(d1, t.all())
    spy_reply, codes_reply = subscribe(d1, Filter(str(t.reply("d2"))))
    own_reply, _ = subscribe(d2, Filter(str(t.reply("d2"))))
    # Execute
    assert publish_ack(worker, t.reply("d2"), b"for d2 only") < 0x80
    assert publish_ack(d2, t.status("d2"), b"d2 status") < 0x80
    assert publish_ack(worker, t.reply("d1"), b"barrier") < 0x80
    # Assert
    for codes in (codes_all, codes_reply):
        assert codes[0] in (0x01, NOT_AUTHORIZED)  # 2.0 acl_file grants; a plugin/2.1 may refuse with 0x87
    assert own_reply.wait_for(lambda ms: [m.payload for m in ms] == [b"for d2 only"])
    assert spy_all.wait_for(lambda ms: any(m.payload == b"barrier" for m in ms))
    assert [m.payload for m in spy_all.messages] == [b"barrier"]  # only its own reply, nothing of d2's
    assert spy_reply.messages == []


def test_worker_publishes_models_devices_read_them(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    worker, bridge, d1 = connect("worker_1"), connect("bridge_1"), connect("d1")
    inbox, _ = subscribe(d1, t.manifests())
    # Execute
    ok = publish_ack(worker, t.manifest("motions"), b"signed")
    bridge_try = publish_ack(bridge, t.manifest("motions"), b"forged")
    # Assert
    assert ok < 0x80 and bridge_try == NOT_AUTHORIZED
    assert inbox.wait_for(lambda ms: len(ms) >= 1)
    assert [m.payload for m in inbox.messages] == [b"signed"]


def test_workers_share_hub_batches_through_a_shared_subscription(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    worker, bridge = connect("worker_1"), connect("bridge_1")
    inbox, codes = subscribe(worker, t.hub_batches().shared("workers"))
    # Execute
    code = publish_ack(bridge, t.hub_batch("digits"), b"batch")
    # Assert
    assert codes == [1] and code < 0x80
    assert inbox.wait_for(lambda ms: [m.payload for m in ms] == [b"batch"])


def test_operator_commands_reach_only_the_addressed_device(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    op, d1, d2, labeller = connect("operator_1"), connect("d1"), connect("d2"), connect("labeller_1")
    in1, _ = subscribe(d1, Filter(f"{ROOT}/edge/+/cmd/+"))
    in2, _ = subscribe(d2, Filter(f"{ROOT}/edge/+/cmd/+"))
    # Execute
    code = publish_ack(op, t.cmd("d1", "rebirth"), b"{}")
    labeller_cmd = publish_ack(labeller, t.cmd("d1", "rebirth"), b"{}")
    barrier = publish_ack(op, t.cmd("d2", "barrier"), b"{}")
    # Assert
    assert code < 0x80 and barrier < 0x80 and labeller_cmd == NOT_AUTHORIZED
    assert in1.wait_for(lambda ms: len(ms) == 1) and in1.topics() == {str(t.cmd("d1", "rebirth"))}
    assert in2.wait_for(lambda ms: len(ms) == 1) and in2.topics() == {str(t.cmd("d2", "barrier"))}


def test_broker_write_decisions_match_shared_acl_for_every_identity_and_kind(secure_env: SecureEnv, connect):
    # Prepare: one sample topic per kind, for the writer's own device and for another.
    clients = {who: connect(who) for who in WRITERS}
    cases = [(who, sample(s.kind, dev)) for who in WRITERS for s in TOPIC_SPECS for dev in ("d1", "d2")]
    # Execute
    got = {(who, str(topic)): publish_ack(clients[who], topic) for who, topic in cases}
    # Assert
    mismatches = [(who, topic, code) for (who, topic), code in got.items()
                  if (code < 0x80) != allowed(who, Access.WRITE, topic, ROOT)]
    assert not mismatches, mismatches
    assert any(code == NOT_AUTHORIZED for code in got.values()) and any(code < 0x80 for code in got.values())


def test_broker_read_decisions_match_shared_acl_for_every_identity_and_kind(secure_env: SecureEnv, connect):
    # Prepare: every reader subscribes to everything; the broker must filter by the ACL.
    writers = {who: connect(who) for who in ("d1", "d2", *SERVICES) if who != "monitor_1"}
    readers = {who: connect(who) if who not in writers else writers[who] for who in READERS}
    inboxes = {who: subscribe(c, Filter(f"{ROOT}/#"))[0] for who, c in readers.items()}
    topics = [sample(s.kind, dev) for s in TOPIC_SPECS for dev in ("d1", "d2")]

    def writer_for(topic: Topic) -> str:
        return next(w for w in writers if allowed(w, Access.WRITE, str(topic), ROOT))

    # Execute
    for topic in topics:
        assert publish_ack(writers[writer_for(topic)], topic, b"probe") < 0x80
    # A barrier per reader: a message it may read, published after every probe was acknowledged.
    for who in readers:
        bar = next(tp for tp in topics if allowed(who, Access.READ, str(tp), ROOT))
        publish_ack(writers[writer_for(bar)], bar, f"barrier-{who}".encode())
    # Assert
    for who, inbox in inboxes.items():
        assert inbox.wait_for(lambda ms, who=who: any(m.payload == f"barrier-{who}".encode() for m in ms)), who
        got = {m.topic for m in inbox.messages if m.payload == b"probe"}
        want = {str(tp) for tp in topics if allowed(who, Access.READ, str(tp), ROOT)}
        assert got == want, f"{who}: extra {sorted(got - want)}, missing {sorted(want - got)}"


def test_packet_above_max_packet_size_disconnects_its_sender(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, observer = connect("d1"), connect("monitor_1")
    inbox, _ = subscribe(observer, t.all())
    disconnected = threading.Event()
    d1.on_disconnect_hooks.append(disconnected.set)
    # Execute
    d1.publish(t.feat("d1", "cam"), b"\0" * (8 * 1024 * 1024 + 1), qos=1)
    # Assert
    assert disconnected.wait(10), "the broker accepted a packet above max_packet_size"
    assert publish_ack(connect("d2"), t.status("d2"), b"barrier") < 0x80
    assert inbox.wait_for(lambda ms: any(m.payload == b"barrier" for m in ms))
    assert inbox.topics() == {str(t.status("d2"))}
