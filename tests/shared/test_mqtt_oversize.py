"""A publish the broker would disconnect us for (above its max_packet_size) is refused and counted instead.

mosquitto (the project's config: max_packet_size 8388608) announces its limit in the CONNACK and
closes the connection of a client that sends a larger packet, without a reason; paho then sends
the same QoS 1 packet again after every reconnect. So the client checks the size itself.
"""

from __future__ import annotations

import threading
import time

import pytest

from shared.protocol.topics import Topics
from shared.transport.mqtt import PacketTooLarge, PublishRefused, _props, publish_packet_size

MiB = 1024 * 1024


def test_the_broker_announces_its_limit(broker, mqtt_factory):
    assert mqtt_factory().broker_max_packet == 8 * MiB  # mosquitto/test.conf, as mosquitto.conf


@pytest.mark.parametrize("qos", [0, 1])
def test_a_10_mb_publish_is_refused_counted_and_the_connection_stays(broker, mqtt_factory, topics: Topics, qos):
    # Prepare
    c = mqtt_factory()
    lost = threading.Event()
    c.on_disconnect_hooks.append(lost.set)
    # Execute
    with pytest.raises(PacketTooLarge) as err:
        c.publish(topics.status("d1"), b"\0" * (10 * 1000 * 1000), qos=qos)
    # Assert: typed (a PublishRefused, as callers already handle), counted, nothing sent, still connected
    assert isinstance(err.value, PublishRefused) and err.value.reason == "too_large"
    assert "the broker accepts at most 8388608 B" in str(err.value)
    assert c.counters.get("mqtt.publish_too_large") == 1 and c.counters.get("mqtt.published") == 0
    done = threading.Event()
    c.publish(topics.status("d1"), b"small", qos=1, on_ack=lambda rc: done.set())
    assert done.wait(5)
    time.sleep(0.5)
    assert not lost.is_set() and c.connected and c.counters.get("mqtt.disconnects") == 0


def test_the_size_is_the_packet_s_own_one_byte_either_side_of_the_limit(broker, mqtt_factory, topics: Topics):
    # Prepare: a packet of exactly the broker's limit, with properties, and one a byte larger
    c = mqtt_factory()
    limit = c.broker_max_packet
    topic = topics.hard("d1", "cam")
    props = dict(response_topic=str(topics.reply("d1")), correlation_data=b"123", message_expiry=30)
    packed = _props(props["response_topic"], props["correlation_data"], None, props["message_expiry"])
    n = limit - publish_packet_size(topic.value, 0, 1, packed)
    while publish_packet_size(topic.value, n, 1, packed) > limit:
        n -= 1
    assert publish_packet_size(topic.value, n, 1, packed) == limit
    codes: list[int] = []
    done = threading.Event()
    # Execute
    c.publish(topic, b"\0" * n, qos=1, on_ack=lambda rc: (codes.append(rc), done.set()), **props)
    assert done.wait(10)
    with pytest.raises(PacketTooLarge):
        c.publish(topic, b"\0" * (n + 1), qos=1, **props)
    # Assert: the broker took the largest packet it allows (no disconnect), the client refused the next
    assert codes[0] < 0x80 and c.connected  # 0x10, no subscribers, is a success and c.counters.get("mqtt.disconnects") == 0
    assert c.counters.get("mqtt.publish_too_large") == 1
