"""Every ack is matched to the packet it acknowledges, through packet-id wrap-around and reconnects.

paho numbers PUBLISH and SUBSCRIBE packets from one counter that wraps after 65,535. An ack
that arrives for a packet the client did not register (a birth, a SUBSCRIBE made on connect)
must never be handed to a later packet that happens to get the same id: that packet's outbox
row would be released before the broker has it. The broker is frozen (SIGSTOP) while the
colliding ids are used, so no genuine PUBACK can arrive: any ack seen then is a stale one.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time

import pytest

from shared.protocol.topics import Topics
from shared.transport.mqtt import MqttClient, MqttSettings

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _wait(pred, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_no_ack_reaches_a_packet_before_its_own_puback_across_id_wraparound(fresh_broker, topics: Topics):
    # Prepare: a client with a retained birth and a subscription, both re-sent on every connect
    birth_topic = topics.status("cam-1")
    c = MqttClient(MqttSettings(port=fresh_broker.port, max_inflight=200, max_queued=70_000, backoff_min=0.05,
                                backoff_max=0.2), client_id="wrap-1", birth=lambda: (birth_topic, b'{"b":1}'))
    c.subscribe(topics.cmds("cam-1"), 1, lambda m: None)
    c.start()
    assert c.wait_connected(10)
    # Execute: reconnect a few times (each: a SUBSCRIBE and a birth with fresh packet ids)
    for _ in range(4):
        before = c.counters.get("mqtt.connects")
        c._client.socket().shutdown(socket.SHUT_RDWR)  # a link cut as the client sees it
        assert _wait(lambda b=before: c.counters.get("mqtt.connects") > b and c.connected)
    time.sleep(0.3)  # let those SUBACKs and the births' PUBACKs arrive
    # ... then publish until the id counter is just short of wrapping around
    topic = topics.telemetry("cam-1")
    acked = [0]
    lock = threading.Lock()

    def count(rc: int) -> None:
        with lock:
            acked[0] += 1

    sent = 0
    while c._client._last_mid < 65_535 - 5:
        c.publish(topic, b"x", qos=1, on_ack=count)
        sent += 1
    assert _wait(lambda: acked[0] == sent, 60), (acked[0], sent)
    # Freeze the broker: from now on no PUBACK can arrive, so any ack is a stale one
    os.kill(fresh_broker.proc.pid, signal.SIGSTOP)
    try:
        early: list[int] = []
        for i in range(40):  # wraps to 1.. and reuses the ids of the births and SUBSCRIBEs
            c.publish(topic, b"y", qos=1, on_ack=lambda rc, i=i: early.append(i))
        time.sleep(0.5)
        # Assert: nothing was acknowledged while the broker could not acknowledge anything
        assert early == [], f"acks before the broker answered: {early}"
    finally:
        os.kill(fresh_broker.proc.pid, signal.SIGCONT)
    # ... and every one of them is acknowledged once the broker runs again
    assert _wait(lambda: len(early) == 40, 15), len(early)
    assert sorted(early) == list(range(40))
    c.stop()
    assert not c.callback_errors
