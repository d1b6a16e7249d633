"""Custody notes: tell each device, on ``edge/{device}/custody``, which of its messages the hub holds.

One write per sweep for all devices with news, at QoS 0: the ranges are cumulative, so the next note
repairs a lost one, and nothing waits for an acknowledgement (1,000 devices: ~1,000 notes a second).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from hub_bridge.custody import CustodyLedger, custody_payload
from shared.process.counters import Counters
from shared.protocol.topics import Topics
from shared.transport.mqtt import MqttClient, MqttError

_TOPIC_CACHE_MAX = 200_000


class CustodyNotes:
    """Devices' notes by default; label publishers' with ``topic_of``/``payload_of`` (hub/custody/{publisher})."""

    def __init__(self, topics: Topics, ledger: CustodyLedger, counters: Counters, *,
                 topic_of: Callable[[str], object] | None = None,
                 payload_of: Callable[[str, int, list[tuple[int, int]], float], bytes] = custody_payload,
                 counter: str = "custody") -> None:
        self.t = topics
        self.ledger = ledger
        self.counters = counters
        self._topic_of = topic_of or topics.custody
        self._payload_of = payload_of
        self._counter = counter
        self._topics: dict[str, object] = {}

    def tell(self, client: MqttClient | None, now: float) -> None:
        if client is None or not client.connected:
            return  # the ledger keeps the news; the next sweep after reconnecting tells it
        cpu0 = time.thread_time()
        try:
            self._tell(client, now)
        finally:  # what the notes cost this bridge, for choosing the interval (bench/bench_custody.py)
            self.counters.inc("custody.cpu_us", int((time.thread_time() - cpu0) * 1e6))

    def _tell(self, client: MqttClient, now: float) -> None:
        ts = time.time()
        topics = self._topics
        out = []
        for device, boot, ranges in self.ledger.due(now):
            topic = topics.get(device)
            if topic is None:
                if len(topics) >= _TOPIC_CACHE_MAX:
                    topics.clear()
                topic = topics[device] = self._topic_of(device)
            out.append((topic, self._payload_of(device, boot, ranges, ts)))
        if not out:
            return
        try:
            client.publish_many_qos0(out)
            self.counters.inc(f"{self._counter}.sent", len(out))
        except MqttError:
            self.counters.inc(f"{self._counter}.unsent", len(out))
