"""The generated ACL, enforced by a real mosquitto running secure.conf: allowed works, denied is denied.

The dynamic security plugin (dynsec.json from shared.security.acl.render_dynsec) refuses PUBLISH with
PUBACK 0x87, SUBSCRIBE with SUBACK 0x87, and never *delivers* a message a client may not
read; deliveries are checked behind a barrier message.
"""

from __future__ import annotations

import threading

import pytest

from shared.protocol.topics import SPEC_BY_KIND, TOPIC_SPECS, Filter, Kind, Topic, ha_config
from shared.security.acl import SERVICE_ROLES, Access, allowed, filters

from .conftest import ROOT, Inbox, SecureEnv, publish_ack, subscribe

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


def test_device_cannot_publish_a_model_a_release_a_reply_a_command_or_a_label(secure_env: SecureEnv, connect):
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
        "release": publish_ack(d1, t.release("digits"), b"{}", retain=True),
        "version": publish_ack(d1, t.model_version("digits", 99), b"{}", retain=True),
        "rollout_cmd": publish_ack(d1, t.rollout_cmd("digits"), b"{}"),
        "rollout_event": publish_ack(d1, t.rollout_event("digits"), b"{}"),
    }
    inbox, _ = subscribe(late, Filter(f"{ROOT}/model/#"))  # would get any retained model at once
    barrier = connect("worker_1")
    publish_ack(barrier, t.manifest("barrier"), b"b", retain=False)
    # Assert
    assert codes == dict.fromkeys(codes, NOT_AUTHORIZED)
    assert inbox.wait_for(lambda ms: any(m.topic == str(t.manifest("barrier")) for m in ms))
    assert inbox.topics() == {str(t.manifest("barrier"))}, "a device's retained model reached a subscriber"


def forbidden_for_d1(t) -> list[Filter]:
    return [
        t.all(), Filter("#"), Filter(str(t.reply("d2"))), Filter(f"{ROOT}/edge/d2/cmd/+"),
        Filter(str(t.cmd("d2", "rollback"))), Filter(f"{ROOT}/edge/+/cmd/+"), Filter(f"{ROOT}/edge/+/reply"),
        Filter(f"{ROOT}/edge/d1/cmd/#"),  # wider than its grant edge/d1/cmd/+
        Filter(f"{ROOT}/edge/d1/#"), Filter(str(t.status("d2"))), t.edge_tree(), t.hub_batches(),
        Filter(f"{ROOT}/model/#"), Filter(f"{ROOT}/label/+/+"), Filter(str(t.reply("d2"))).shared("g"),
        Filter("$CONTROL/dynamic-security/#"), Filter("$SYS/#"),
    ]


def test_forbidden_device_subscriptions_are_refused_with_0x87_and_receive_nothing(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, d2, worker, op = connect("d1"), connect("d2"), connect("worker_1"), connect("operator_1")
    spies = {f.value: subscribe(d1, f) for f in forbidden_for_d1(t)}
    mine, mine_codes = subscribe(d1, Filter(str(t.reply("d1"))))
    own_reply, _ = subscribe(d2, Filter(str(t.reply("d2"))))
    # Execute
    assert publish_ack(worker, t.reply("d2"), b"for d2 only") < 0x80
    assert publish_ack(d2, t.status("d2"), b"d2 status") < 0x80
    assert publish_ack(op, t.cmd("d2", "rollback"), b"d2 cmd") < 0x80
    assert publish_ack(worker, t.reply("d1"), b"barrier") < 0x80
    # Assert
    assert {f: codes for f, (_, codes) in spies.items()} == {f: [NOT_AUTHORIZED] for f in spies}
    assert mine_codes == [1]
    assert d1.counters.snapshot().get(f"mqtt.subscribe_denied.{NOT_AUTHORIZED:#x}") == len(spies)
    assert own_reply.wait_for(lambda ms: [m.payload for m in ms] == [b"for d2 only"])  # it was delivered to d2
    assert mine.wait_for(lambda ms: [m.payload for m in ms] == [b"barrier"])
    assert d1.counters.snapshot().get("mqtt.received") == 1, "d1 got something besides its own reply"
    for f, (inbox, _) in spies.items():  # a spy filter that covers d1's reply sees that one, nothing else
        assert all(m.payload == b"barrier" for m in inbox.messages), f


def test_device_own_and_model_subscriptions_are_granted(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1 = connect("d1", "mtls")  # the certificate CN is the identity the plugin looks up
    wanted = [Filter(str(t.reply("d1"))), Filter(f"{ROOT}/edge/d1/cmd/+"), Filter(str(t.cmd("d1", "rollback"))),
              t.manifests(), Filter(str(t.manifest("digits"))), Filter(f"{ROOT}/model/+/artifact/+"),
              Filter(str(t.reply("d1"))).shared("g")]
    # Execute
    codes = {f.value: subscribe(d1, f)[1] for f in wanted}
    refused = subscribe(d1, Filter(str(t.reply("d2"))))[1]
    # Assert
    assert codes == {f.value: [1] for f in wanted}
    assert refused == [NOT_AUTHORIZED]


def _raw_publish_code(settings, topic: str, payload: bytes, timeout: float = 5.0) -> int:
    """PUBACK reason code of one QoS 1 publish through plain paho (shared.transport.mqtt.Topic refuses '$' topics)."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"{settings.username}-raw", protocol=paho.MQTTv5)
    c.username_pw_set(settings.username, settings.password)
    connected, acked, codes = threading.Event(), threading.Event(), []
    c.on_connect = lambda *a: connected.set()
    c.on_publish = lambda _c, _u, _mid, rc, _p: (codes.append(rc.value), acked.set())
    c.connect(settings.host, settings.port)
    c.loop_start()
    try:
        assert connected.wait(timeout), "raw client did not connect"
        c.publish(topic, payload, qos=1)
        assert acked.wait(timeout), f"no PUBACK for {topic}"
        return codes[0]
    finally:
        c.disconnect()
        c.loop_stop()


def test_nobody_may_use_the_dynamic_security_control_topic(secure_env: SecureEnv, connect):
    # Prepare: the plugin's admin API; no generated role grants it, so dynsec.json is the only source
    who = ("d1", "monitor_1", "worker_1")
    clients = {w: connect(w) for w in who}
    # Execute
    sub = {w: subscribe(c, Filter("$CONTROL/dynamic-security/#"))[1] for w, c in clients.items()}
    pub = {w: _raw_publish_code(secure_env.settings(w), "$CONTROL/dynamic-security/v1",
                                b'{"commands":[{"command":"deleteClient","username":"d2"}]}') for w in who}
    d2_still_works = publish_ack(connect("d2"), secure_env.topics.status("d2"), b"alive")
    # Assert
    assert sub == dict.fromkeys(who, [NOT_AUTHORIZED])
    assert pub == dict.fromkeys(who, NOT_AUTHORIZED)
    assert d2_still_works < 0x80


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


def test_only_operators_and_workers_command_a_release_and_only_the_worker_changes_it(secure_env: SecureEnv,
                                                                                      connect):
    # Prepare
    t = secure_env.topics
    op, worker, d1, bridge = connect("operator_1"), connect("worker_1"), connect("d1"), connect("bridge_1")
    inbox, codes = subscribe(worker, Filter(str(t.rollout_cmd("digits"))))
    # Execute
    sent = {who: publish_ack(c, t.rollout_cmd("digits"), who.encode())
            for who, c in (("operator_1", op), ("d1", d1), ("bridge_1", bridge), ("worker_1", worker))}
    release = {who: publish_ack(c, t.release("digits"), b"{}", retain=False)
               for who, c in (("operator_1", op), ("worker_1", worker))}
    # Assert
    assert codes == [1]
    assert sent == {"operator_1": sent["operator_1"], "d1": NOT_AUTHORIZED, "bridge_1": NOT_AUTHORIZED,
                    "worker_1": sent["worker_1"]} and sent["operator_1"] < 0x80 and sent["worker_1"] < 0x80
    assert release["operator_1"] == NOT_AUTHORIZED and release["worker_1"] < 0x80
    assert inbox.wait_for(lambda ms: len(ms) == 2)
    assert sorted(m.payload for m in inbox.messages) == [b"operator_1", b"worker_1"]


def test_operator_commands_reach_only_the_addressed_device(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    op, d1, d2, labeller = connect("operator_1"), connect("d1"), connect("d2"), connect("labeller_1")
    _, wide = subscribe(d1, Filter(f"{ROOT}/edge/+/cmd/+"))
    in1, _ = subscribe(d1, Filter(f"{ROOT}/edge/d1/cmd/+"))
    in2, _ = subscribe(d2, Filter(f"{ROOT}/edge/d2/cmd/+"))
    # Execute
    code = publish_ack(op, t.cmd("d1", "rebirth"), b"{}")
    labeller_cmd = publish_ack(labeller, t.cmd("d1", "rebirth"), b"{}")
    barrier = publish_ack(op, t.cmd("d2", "barrier"), b"{}")
    # Assert
    assert wide == [NOT_AUTHORIZED]
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


def test_broker_subscribe_decisions_match_shared_acl_for_every_identity_and_kind(secure_env: SecureEnv, connect):
    # Prepare: every reader subscribes to one sample topic of every kind, its own and another device's
    clients = {who: connect(who) for who in READERS}
    cases = [(who, sample(s.kind, dev)) for who in READERS for s in TOPIC_SPECS for dev in ("d1", "d2")]
    # Execute
    got = {(who, str(topic)): subscribe(clients[who], Filter(str(topic)))[1] for who, topic in cases}
    # Assert
    mismatches = [(who, topic, codes) for (who, topic), codes in got.items()
                  if codes != ([1] if allowed(who, Access.READ, topic, ROOT) else [NOT_AUTHORIZED])]
    assert not mismatches, mismatches
    assert any(c == [1] for c in got.values()) and any(c == [NOT_AUTHORIZED] for c in got.values())


def test_broker_read_decisions_match_shared_acl_for_every_identity_and_kind(secure_env: SecureEnv, connect):
    # Prepare: every reader subscribes to everything it may (its generated filters); the broker
    # refuses the whole tree to all but the monitor, and must filter deliveries by the ACL.
    writers = {who: connect(who) for who in ("d1", "d2", *SERVICES) if who != "monitor_1"}
    readers = {who: connect(who) if who not in writers else writers[who] for who in READERS}
    inboxes = {who: Inbox() for who in readers}
    tree_codes = {who: c.subscribe_and_wait(Filter(f"{ROOT}/#"), 1) for who, c in readers.items()}
    for who, c in readers.items():
        for f in filters(who, Access.READ, ROOT):
            assert c.subscribe_and_wait(Filter(f), 1, inboxes[who]) == [1], (who, f)
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
    assert tree_codes == {who: [1] if who.startswith("monitor_") else [NOT_AUTHORIZED] for who in readers}


def test_packet_above_max_packet_size_disconnects_its_sender(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    d1, observer = connect("d1"), connect("monitor_1")
    inbox, _ = subscribe(observer, t.all())
    disconnected = threading.Event()
    d1.on_disconnect_hooks.append(disconnected.set)
    # A client that ignores the Maximum Packet Size in the CONNACK (ours refuses such a publish itself:
    # tests/shared/test_mqtt_oversize.py), so the packet reaches the broker; QoS 0, as a QoS 1 one would be
    # sent again on every reconnect.
    d1.broker_max_packet = None
    # Execute
    d1.publish(t.feat("d1", "cam"), b"\0" * (8 * 1024 * 1024 + 1), qos=0)
    # Assert
    assert disconnected.wait(10), "the broker accepted a packet above max_packet_size"
    assert publish_ack(connect("d2"), t.status("d2"), b"barrier") < 0x80
    assert inbox.wait_for(lambda ms: any(m.payload == b"barrier" for m in ms))
    assert inbox.topics() == {str(t.status("d2"))}


def test_console_publishes_labels_and_commands_but_not_models_or_another_devices_predictions(secure_env: SecureEnv,
                                                                                             connect):
    # Prepare: the console's own identity (lepton up --secure gives it console_1)
    t = secure_env.topics
    console, d1 = connect("console_1"), connect("d1")
    own_custody, codes_own = subscribe(console, t.label_custody("console_1"))
    _, codes_other = subscribe(console, t.label_custody("labeller_1"))
    _, codes_hard = subscribe(console, t.edge_kind(Kind.HARD))
    _, codes_rollout = subscribe(console, t.releases())
    _, codes_events = subscribe(console, t.rollout_events())
    inbox, _ = subscribe(d1, t.cmds("d1"))

    # Execute
    label = publish_ack(console, t.label("d1", "cam"), b"{}")
    cmd = publish_ack(console, t.cmd("d1", "thresholds"), b"{}")
    model = publish_ack(console, t.manifest("digits"), b"{}", retain=True)
    artifact = publish_ack(console, t.artifact("digits", 9), b"x", retain=True)
    pred = publish_ack(console, t.pred("d1", "cam"), b"{}")
    reply = publish_ack(console, t.reply("d1"), b"{}")
    batch = publish_ack(console, t.hub_batch("digits"), b"x")
    release = publish_ack(console, t.release("digits"), b"{}", retain=True)
    rollout_cmd = publish_ack(console, t.rollout_cmd("digits"), b"{}")

    # Assert: what a labeller and an operator need, nothing more (it shows releases, it cannot make one)
    assert label < 0x80 and cmd < 0x80
    assert (model, artifact, pred, reply, batch, release, rollout_cmd) == (NOT_AUTHORIZED,) * 7
    assert codes_own[0] < 0x80 and codes_hard[0] < 0x80 and codes_other == [NOT_AUTHORIZED]
    assert codes_rollout[0] < 0x80 and codes_events[0] < 0x80
    assert inbox.wait_for(lambda ms: len(ms) == 1) and inbox.topics() == {str(t.cmd("d1", "thresholds"))}


def test_a_device_announces_only_itself_to_home_assistant_on_the_real_broker(secure_env: SecureEnv, connect):
    d1, ha = connect("d1"), connect("homeassistant_1")
    assert publish_ack(d1, ha_config("homeassistant", "binary_sensor", "d1", "digits_0")) < 0x80
    assert publish_ack(d1, ha_config("homeassistant", "binary_sensor", "d2", "digits_0")) == NOT_AUTHORIZED
    assert subscribe(ha, Filter("homeassistant/#"))[1] == [1]
    assert subscribe(ha, Filter(f"{ROOT}/edge/+/hard/+"))[1] == [NOT_AUTHORIZED]  # raw samples are not its business
