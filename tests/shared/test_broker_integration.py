"""The protocol through a real mosquitto started with mosquitto/test.conf."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from shared.process.counters import Counters
from shared.protocol import schemas, wire
from shared.protocol.topics import SPEC_BY_KIND, Topics
from shared.transport.mqtt import MqttClient, MqttSettings, NotConnected

from .samples import feature_batch, fused_batch, hard_sample, json_samples

pytestmark = pytest.mark.broker


def wait_for(pred, timeout=10.0, interval=0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def test_every_payload_round_trips_through_the_broker(mqtt_factory, topics):
    # Prepare: a subscriber on the whole (test-unique) tree
    got: dict[str, wire.Decoded] = {}
    counters = Counters()
    sub = mqtt_factory()
    sub.subscribe_and_wait(topics.all(), 1, wire.Receiver(topics, lambda d, m: got.__setitem__(m.topic, d), counters))
    pub = mqtt_factory()
    outgoing = [(tp, schemas.dumps(m), m) for tp, m in json_samples(topics)]
    for rec, tp in [(feature_batch(), topics.feat("cam-1", "front")), (hard_sample(), topics.hard("cam-1", "front")),
                    (fused_batch(), topics.hub_batch("digits"))]:
        outgoing.append((tp, rec.encode(), rec))
    outgoing.append((topics.artifact("digits", 3), b"\x08\x07onnx-bytes", b"\x08\x07onnx-bytes"))
    # Execute: publish each with the QoS/retain its spec says
    for tp, payload, _ in outgoing:
        spec = SPEC_BY_KIND[topics.parse(tp).kind]
        pub.publish(tp, payload, qos=spec.qos, retain=spec.retain)
    # Assert: every one arrives and decodes to what was sent
    assert wait_for(lambda: len(got) == len(outgoing)), sorted(set(map(str, (o[0] for o in outgoing))) - set(got))
    for tp, _, original in outgoing:
        value = got[str(tp)].value
        if hasattr(original, "encode") and not isinstance(original, bytes):
            assert type(value) is type(original) and value.seq == original.seq
        else:
            assert value == original
    assert counters.total("rejected.") == 0
    # retained topics are cleared so the session broker stays tidy for other tests
    for tp, _, _ in outgoing:
        if SPEC_BY_KIND[topics.parse(tp).kind].retain:
            pub.publish(tp, b"", qos=1, retain=True)


def test_properties_survive_the_broker(mqtt_factory, topics):
    got = []
    sub = mqtt_factory()
    sub.subscribe_and_wait(topics.edge_tree(), 1, got.append)
    pub = mqtt_factory()
    pub.publish(topics.hard("cam-1", "front"), hard_sample().encode(), qos=1, response_topic=topics.reply("cam-1"),
                correlation_data=b"\x00\x01corr", user_properties=[("trace", "abc")], message_expiry=60)
    assert wait_for(lambda: got)
    m = got[0]
    assert m.response_topic == str(topics.reply("cam-1"))
    assert m.correlation_data == b"\x00\x01corr"
    assert ("trace", "abc") in m.user_properties
    assert m.message_expiry is not None and 0 < m.message_expiry <= 60


def test_malformed_payload_is_rejected_typed_and_subscriber_keeps_working(mqtt_factory, topics):
    good = []
    counters = Counters()
    sub = mqtt_factory()
    sub.subscribe_and_wait(topics.all(), 1, wire.Receiver(topics, lambda d, m: good.append(d), counters))
    pub = mqtt_factory()
    status = json_samples(topics)[0][1]
    # Execute: garbage of several kinds, then one good message
    pub.publish(topics.feat("cam-1", "front"), b"LPT\x01\x10\x00\x00\x00{}", qos=1)
    pub.publish(topics.status("cam-1"), b"{not json", qos=1)
    pub.publish(topics.status("cam-1"), b'{"schema": 7, "kind": "status"}', qos=1)
    pub.publish(topics.feat("cam-2", "front"), feature_batch("cam-1").encode(), qos=1)
    pub.publish(topics.status("cam-1"), schemas.dumps(status), qos=1)
    # Assert
    assert wait_for(lambda: good)
    assert good[0].value == status
    snap = counters.snapshot()
    assert snap.get("rejected.feat.truncated") == 1
    assert snap.get("rejected.status.not_json") == 1
    assert snap.get("rejected.status.unknown_schema_version") == 1
    assert snap.get("rejected.feat.topic_mismatch") == 1
    pub.publish(topics.status("cam-1"), b"", qos=1, retain=True)


LWT_CHILD = textwrap.dedent("""
    import sys, time
    from shared.transport.mqtt import MqttClient, MqttSettings, Will
    from shared.protocol.topics import Topics
    from shared.protocol import schemas
    t = Topics(sys.argv[2])
    dev = "lwt-dev"
    def status(state):
        return schemas.dumps(schemas.Status(device=dev, state=state, boot=1, ts=time.time()))
    c = MqttClient(MqttSettings(port=int(sys.argv[1]), keepalive=5), client_id=dev,
                   will=Will(t.status(dev), status("offline")), birth=lambda: (t.status(dev), status("online")))
    c.start()
    assert c.wait_connected(10)
    print("ready", flush=True)
    time.sleep(60)
""")


def test_sigkill_turns_retained_status_offline(broker, mqtt_factory, topics):
    states = []
    proc = subprocess.Popen([sys.executable, "-c", LWT_CHILD, str(broker.port), topics.root],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        watcher = mqtt_factory()
        watcher.subscribe_and_wait(topics.statuses(), 1,
                                   lambda m: m.payload and states.append(schemas.loads(m.payload, schemas.Status).state))
        assert wait_for(lambda: states == ["online"])
        proc.kill()
        proc.wait(5)
        assert wait_for(lambda: states[-1:] == ["offline"])
        # and the retained value a late subscriber sees is offline too
        late = []
        late_c = mqtt_factory()
        late_c.subscribe_and_wait(topics.statuses(), 1, lambda m: m.payload and late.append(schemas.loads(m.payload, schemas.Status)))
        assert wait_for(lambda: late) and late[0].state == "offline" and late[0].device == "lwt-dev"
    finally:
        proc.kill()
    mqtt_factory().publish(topics.status("lwt-dev"), b"", qos=1, retain=True)


def test_client_sets_tcp_nodelay(mqtt_factory):
    c = mqtt_factory()
    assert c._client.socket().getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1


def test_publish_while_disconnected_raises_and_counts(fresh_broker):
    c = MqttClient(MqttSettings(port=fresh_broker.port, backoff_max=0.5), client_id="nc")
    c.start()
    try:
        assert c.wait_connected(5)
        fresh_broker.stop()
        assert wait_for(lambda: not c.connected)
        with pytest.raises(NotConnected):
            c.publish(Topics().telemetry("d1"), b"{}")
        assert c.counters.get("mqtt.publish_not_connected") == 1
    finally:
        c.stop()


def test_reconnects_with_backoff_and_resubscribes(fresh_broker, topics):
    got = []
    c = MqttClient(MqttSettings(port=fresh_broker.port, backoff_min=0.05, backoff_max=0.5), client_id="rc")
    c.subscribe(topics.edge_tree(), 1, got.append)
    c.start()
    pub = MqttClient(MqttSettings(port=fresh_broker.port, backoff_min=0.05, backoff_max=0.5), client_id="rp")
    pub.start()
    try:
        assert c.wait_connected(5) and pub.wait_connected(5)
        fresh_broker.restart()
        assert wait_for(lambda: c.counters.get("mqtt.connects") >= 2 and pub.counters.get("mqtt.connects") >= 2)
        assert c.counters.get("mqtt.connect_failures") >= 0
        # the subscription came back without the caller doing anything
        assert wait_for(lambda: (pub.publish(topics.telemetry("d1"), b"{}", qos=1) and False) or bool(got), timeout=5)
    finally:
        c.stop()
        pub.stop()
    assert not c.callback_errors


def test_durable_session_receives_what_was_sent_while_away(broker, mqtt_factory, topics):
    settings = MqttSettings(port=broker.port, clean_start=False, session_expiry=300)
    got = []
    first = MqttClient(settings, client_id=f"durable-{topics.root[-6:]}")
    first.subscribe(topics.edge_tree(), 1, got.append)
    first.start()
    assert first.wait_connected(5)
    time.sleep(0.2)  # SUBACK before going away; the session must hold the subscription
    first.stop()
    pub = mqtt_factory()
    for i in range(50):
        pub.publish(topics.event("cam-1", "front"), b"%d" % i, qos=1)
    time.sleep(0.3)
    got2 = []
    second = MqttClient(settings, client_id=f"durable-{topics.root[-6:]}")
    second.subscribe(topics.edge_tree(), 1, got2.append)
    second.start()
    try:
        assert wait_for(lambda: len(got2) >= 50)
        assert [m.payload for m in got2[:50]] == [b"%d" % i for i in range(50)]
    finally:
        second.stop()


def test_handler_exceptions_are_counted_not_swallowed(mqtt_factory, topics):
    c = mqtt_factory()
    calls = []

    def boom(m):
        calls.append(m)
        raise RuntimeError("handler bug")

    c.subscribe_and_wait(topics.edge_tree(), 1, boom)
    mqtt_factory().publish(topics.telemetry("d1"), b"{}", qos=1)
    assert wait_for(lambda: c.counters.get("mqtt.callback_errors") == 1)
    assert isinstance(c.callback_errors[0], RuntimeError)
    c.callback_errors.clear()  # expected here; the fixture fails the test on any other
    assert calls and threading.active_count() > 0


def test_bounded_incoming_queue_drops_oldest_and_counts(mqtt_factory, topics):
    # Prepare: a consumer that does not drain while 30 messages arrive into a queue of 10
    c = mqtt_factory()
    q = c.subscribe_queue(topics.edge_tree(), 1, maxsize=10, wait=5)
    pub = mqtt_factory()
    for i in range(30):
        pub.publish(topics.telemetry("d1"), b"%d" % i, qos=1)
    # Assert: the newest 10 kept in order, 20 dropped and counted
    assert wait_for(lambda: c.counters.get("mqtt.received") == 30)
    assert [m.payload for m in q.drain()] == [b"%d" % i for i in range(20, 30)]
    assert c.counters.get("mqtt.inbox_dropped") == 20 and q.dropped == 20
