"""shared.transport.mqtt_fast: the chunked PUBLISH reader gives the same messages as paho, however the bytes arrive,
hands everything unusual to paho, and batches PUBACKs and QoS 0 publishes into one write."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.transport import mqtt_fast
from shared.transport.mqtt import Message, MqttClient

from ..conftest import settings_for


def _varint(n: int) -> bytes:
    return mqtt_fast._encode_varint(n)


def publish_packet(topic: str, payload: bytes, qos: int = 1, mid: int = 7, retain: bool = False,
                   props: Properties | None = None) -> bytes:
    """A PUBLISH as a broker sends it, properties packed by paho's own encoder."""
    t = topic.encode()
    body = len(t).to_bytes(2, "big") + t + (mid.to_bytes(2, "big") if qos else b"")
    body += props.pack() if props is not None else b"\x00"
    body += payload
    return bytes((0x30 | qos << 1 | int(retain),)) + _varint(len(body)) + body


def all_props() -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.PayloadFormatIndicator = 0
    p.MessageExpiryInterval = 9
    p.ResponseTopic = "lepton/v1/edge/cam-1/reply"
    p.CorrelationData = b"\x00\x01corr"
    p.UserProperty = [("k", "v"), ("sent", "1.5")]
    p.ContentType = "application/x-lepton"
    p.SubscriptionIdentifier = 300
    return p


def test_parse_publish_reads_every_publish_property_lepton_uses():
    pkt = publish_packet("a/b/c", b"\x00payload\xff", qos=1, mid=513, retain=True, props=all_props())
    _, start = mqtt_fast._varint(pkt, 1)

    m = mqtt_fast.parse_publish(pkt[0], pkt, start, len(pkt))

    assert m == Message("a/b/c", b"\x00payload\xff", 1, True, "lepton/v1/edge/cam-1/reply", b"\x00\x01corr",
                        (("k", "v"), ("sent", "1.5")), 9, 513)


@pytest.mark.parametrize("mutate", ["qos2", "topic_alias", "truncated", "bad_utf8"])
def test_parse_publish_leaves_the_unusual_to_paho(mutate):
    p = Properties(PacketTypes.PUBLISH)
    if mutate == "topic_alias":
        p.TopicAlias = 3
    pkt = publish_packet("a/b", b"x", qos=2 if mutate == "qos2" else 1, props=p)
    if mutate == "truncated":
        pkt = pkt[:6]
    if mutate == "bad_utf8":
        pkt = pkt[:4] + b"\xff" + pkt[5:]
    with pytest.raises((mqtt_fast._Fallback, IndexError, UnicodeDecodeError)):
        mqtt_fast.parse_publish(pkt[0], pkt, 2, len(pkt))


class _Sock:
    """A non-blocking socket that hands out the given chunks, then would block."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = list(chunks)

    def close(self) -> None:
        pass

    def recv(self, n: int) -> bytes:
        if not self.chunks:
            raise BlockingIOError
        c = self.chunks.pop(0)
        if len(c) > n:
            self.chunks.insert(0, c[n:])
            c = c[:n]
        return c


def _client(received: list[Message]) -> mqtt_fast.FastClient:
    c = mqtt_fast.FastClient(paho.CallbackAPIVersion.VERSION2, client_id="t", protocol=paho.MQTTv5,
                             manual_ack=True, on_fast_message=received.append)
    return c


def _read_all(c: mqtt_fast.FastClient, chunks: list[bytes]) -> None:
    c._sock = _Sock(chunks)
    while c._sock.chunks:
        assert c._packet_read() in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_AGAIN)


@pytest.mark.parametrize("split", ["whole", "bytewise", "odd", "large"])
def test_reader_gives_the_same_messages_however_the_stream_is_cut(split):
    big = bytes(range(256)) * 800  # 200 KiB: more than one read
    msgs = [("t/1", b"a", 0, None), ("t/2", b"b" * 300, 1, all_props()), ("t/3", big, 1, None), ("t/4", b"", 1, None)]
    stream = b"".join(publish_packet(t, p, qos=q, mid=i + 1, props=pr) for i, (t, p, q, pr) in enumerate(msgs))
    if split == "whole":
        chunks = [stream]
    elif split == "bytewise":
        chunks = [stream[i:i + 1] for i in range(min(len(stream), 2000))] + [stream[2000:]]
    elif split == "odd":
        chunks = [stream[i:i + 777] for i in range(0, len(stream), 777)]
    else:
        chunks = [stream[:3], stream[3:150_000], stream[150_000:]]
    got: list[Message] = []

    _read_all(_client(got), chunks)

    assert [(m.topic, m.payload, m.qos, m.mid) for m in got] == [(t, p, q, i + 1 if q else 0) for i, (t, p, q, _)
                                                                 in enumerate(msgs)]
    assert got[1].response_topic == "lepton/v1/edge/cam-1/reply" and got[1].message_expiry == 9


def test_other_packets_and_unusual_publishes_go_to_paho():
    got: list[Message] = []
    paho_got: list[paho.MQTTMessage] = []
    c = _client(got)
    c.on_message = lambda cl, u, m: paho_got.append(m)
    pingresp = b"\xd0\x00"
    qos2 = publish_packet("t/q2", b"two", qos=2, mid=9)

    _read_all(c, [pingresp + publish_packet("t/q1", b"one") + qos2])

    assert [m.topic for m in got] == ["t/q1"]
    assert c.fallbacks == 1  # the QoS 2 one: paho answers PUBREC and delivers it on PUBREL


def test_ack_many_and_publish_many_qos0_are_one_write_each():
    c = _client([])
    c.ack_many([1, 2, 65535])
    c.publish_many_qos0([("lepton/v1/edge/cam-1/custody", b'{"a":1}'), ("x/y", b"")])
    acks, pubs = list(c._out_packet)
    assert acks["packet"] == b"\x40\x02\x00\x01\x40\x02\x00\x02\x40\x02\xff\xff"
    got: list[Message] = []
    _read_all(_client(got), [pubs["packet"]])
    assert [(m.topic, m.payload, m.qos) for m in got] == [("lepton/v1/edge/cam-1/custody", b'{"a":1}', 0),
                                                          ("x/y", b"", 0)]


@pytest.mark.broker
@pytest.mark.parametrize("fast", [True, False])
def test_fast_and_plain_clients_receive_the_same_message(broker, topics, mqtt_factory, fast):
    # Prepare
    pub = mqtt_factory()
    sub = MqttClient(settings_for(broker, fast_receive=fast, manual_ack=True), client_id=f"f-{fast}")
    got: list[Message] = []
    counted: list[int] = []
    done = threading.Event()
    sub.start()
    try:
        assert sub.wait_connected(10)
        assert isinstance(sub._client, mqtt_fast.FastClient) is fast

        def on(m: Message) -> None:
            got.append(m)
            counted.append(sub.counters.get("mqtt.received"))  # counted before the handler runs
            sub.ack_many([m])
            done.set()

        sub.subscribe_and_wait(topics.cmds("cam-1"), 1, on)
        # Execute
        pub.publish(topics.cmd("cam-1", "rebirth"), b"\x00body", qos=1, response_topic=topics.reply("cam-1"),
                    correlation_data=b"c1", user_properties=[("a", "b")], message_expiry=30)
        # Assert
        assert done.wait(10)
    finally:
        sub.stop()
    m = got[0]
    assert (m.topic, m.payload, m.qos, m.response_topic, m.correlation_data, m.user_properties) == (
        str(topics.cmd("cam-1", "rebirth")), b"\x00body", 1, str(topics.reply("cam-1")), b"c1", (("a", "b"),))
    assert 0 < m.message_expiry <= 30
    assert counted == [1] and sub.counters.get("mqtt.received") == 1


def test_packed_properties_read_back_as_paho_packs_them():
    packed = mqtt_fast.PackedProperties.publish("a/reply", b"\x00c", [("k", "v"), ("x", "y")], 12)
    ours = publish_packet("t", b"p", props=packed)
    p = Properties(PacketTypes.PUBLISH)
    p.MessageExpiryInterval = 12
    p.ResponseTopic = "a/reply"
    p.CorrelationData = b"\x00c"
    p.UserProperty = [("k", "v"), ("x", "y")]
    theirs = publish_packet("t", b"p", props=p)

    def read(pkt: bytes) -> Message:
        _, start = mqtt_fast._varint(pkt, 1)
        return mqtt_fast.parse_publish(pkt[0], pkt, start, len(pkt))

    assert read(ours) == read(theirs) == Message("t", b"p", 1, False, "a/reply", b"\x00c", (("k", "v"), ("x", "y")),
                                                 12, 7)
    assert mqtt_fast.PackedProperties.publish(None, None, None, None).pack() == b"\x00"
