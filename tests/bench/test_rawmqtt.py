"""The benches' raw-socket publisher (bench/rawmqtt.py) speaks MQTT 5 as a real broker and client
read it: QoS 1 and 0, response topic, correlation data and user properties arrive intact, every
QoS 1 message is acknowledged, and the broker's Receive Maximum is respected."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import rawmqtt  # noqa: E402

from shared.transport.mqtt import Message  # noqa: E402

pytestmark = pytest.mark.broker


def test_messages_and_properties_arrive_as_sent(broker, topics, mqtt_factory):
    got: list[Message] = []
    done = threading.Event()

    def on(m: Message) -> None:
        got.append(m)
        if len(got) >= 503:
            done.set()

    sub = mqtt_factory()
    sub.subscribe(topics.all(), 1, on)
    time.sleep(0.3)
    pub = rawmqtt.RawPublisher(broker.port, "raw-test")
    assert 1 <= pub.receive_max <= 65535
    hard = rawmqtt.utf8(str(topics.hard("cam-1", "front")))
    pub.publish(hard, b"\x00\x01binary", 1, rawmqtt.props(str(topics.reply("cam-1")), b"corr-7", [("sent", "12.5")]))
    pub.publish(rawmqtt.utf8(str(topics.telemetry("cam-1"))), b"{}", 0)
    pub.flush()
    feat = rawmqtt.utf8(str(topics.feat("cam-1", "front")))
    took = rawmqtt.paced(pub, [(feat, b"x" * 100, 1, b"") for _ in range(500)], rate=20000)
    assert pub.wait_acked(10) and pub.acked == 501 and pub.inflight == 0
    assert took < 5
    pub.flush()
    pub.publish(rawmqtt.utf8(str(topics.status("cam-1"))), b"last", 1)
    pub.close()
    assert done.wait(10), len(got)
    first = got[0]
    assert first.topic == str(topics.hard("cam-1", "front")) and bytes(first.payload) == b"\x00\x01binary"
    assert first.response_topic == str(topics.reply("cam-1")) and first.correlation_data == b"corr-7"
    assert ("sent", "12.5") in list(first.user_properties or [])
    assert sum(1 for m in got if m.topic == str(topics.feat("cam-1", "front"))) == 500


def test_varint_matches_the_mqtt_examples():
    assert [rawmqtt.varint(n) for n in (0, 127, 128, 16383, 16384, 2097151)] == [
        b"\x00", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\x80\x80\x01", b"\xff\xff\x7f"]
