"""Drains the outbox to the broker: a window of unacknowledged messages.

Runs in its own thread so neither inference nor the network thread ever waits on SQLite
or on the broker. After a reconnect every unacknowledged row is sent again from the start
of its class (the broker or paho may deliver some twice; (device, boot, seq) dedups them).

With custody (the default) a PUBACK only marks a QoS 1 row sent; the bridge's custody message
deletes it, and a sent row left without custody is sent again after ``custody_timeout_s``,
doubling per attempt up to ``custody_timeout_max_s``. Without custody a PUBACK deletes it.

Resends go out only while the hub shows it is alive (a custody message came within
``custody_timeout_s``): while the bridge is down the broker still holds what was sent, and
resending would only pile copies into its queue. After ``custody_timeout_max_s`` without any
custody the due rows go out anyway, in case the hub lost them and this device sends nothing new.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable

from edge_agent.outbox import CLASSES, Outbox, Row
from shared.process.counters import Counters
from shared.protocol.topics import Topic
from shared.transport.mqtt import PACKET_TOO_LARGE, MqttClient, MqttError, PacketTooLarge

log = logging.getLogger(__name__)

_RETRY_CODES = {0x97}  # quota exceeded: try again later instead of dropping


class OutboxSender:
    def __init__(self, outbox: Outbox, client: MqttClient, *, inflight: int = 32, counters: Counters | None = None,
                 on_sent: Callable[[Row], None] | None = None, purge_every_s: float = 5.0, custody: bool = True,
                 custody_timeout_s: float = 30.0, custody_timeout_max_s: float = 600.0,
                 resend_every_s: float = 1.0) -> None:
        self.outbox = outbox
        self.client = client
        self.window = inflight
        self.counters = counters or Counters()
        self.on_sent = on_sent
        self.purge_every_s = purge_every_s
        self.custody = custody
        self.custody_timeout_s = custody_timeout_s
        self.custody_timeout_max_s = custody_timeout_max_s
        self.resend_every_s = resend_every_s
        self._cv = threading.Condition()
        self._acked: list[int] = []
        self._sent: list[int] = []
        self._released: list[tuple[int, list[tuple[int, int]]]] = []
        self._last_custody = time.monotonic()
        self._retry: list[int] = []
        self._inflight: dict[int, Row] = {}
        self._after: dict[str, int] = dict.fromkeys(CLASSES, 0)
        self._reset = False
        self._dirty = True
        self._stop = threading.Event()

    # ---- hooks, called from other threads -------------------------------------
    def notify(self) -> None:
        with self._cv:
            self._dirty = True
            self._cv.notify()

    def connection_changed(self, *_: object) -> None:
        with self._cv:
            self._reset = True
            self._dirty = True
            self._cv.notify()

    def release(self, boot: int, ranges: list[tuple[int, int]]) -> None:
        """Custody arrived (network thread): the sender thread deletes those rows."""
        with self._cv:
            self._released.append((boot, ranges))
            self._last_custody = time.monotonic()
            self._cv.notify()

    def stop(self) -> None:
        self._stop.set()
        with self._cv:
            self._cv.notify()

    @property
    def inflight(self) -> int:
        with self._cv:
            return len(self._inflight)

    # ---- thread -----------------------------------------------------------------
    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self._run()
            except sqlite3.Error as exc:  # e.g. disk trouble: keep the rows, try again shortly
                self.counters.inc("outbox.errors.sender")
                log.error("outbox sender: %s; retrying", exc)
                self.connection_changed()
                self._stop.wait(1.0)

    def _run(self) -> None:
        last_purge = last_resend = 0.0
        while not self._stop.is_set():
            with self._cv:
                self._cv.wait_for(lambda: self._stop.is_set() or self._acked or self._sent or self._released
                                  or self._retry or self._reset
                                  or (self._dirty and len(self._inflight) < self.window), timeout=1.0)
                acked, self._acked = self._acked, []
                sent, self._sent = self._sent, []
                released, self._released = self._released, []
                retry, self._retry = self._retry, []
                reset, self._reset = self._reset, False
                self._dirty = False
                for i in acked + sent:
                    self._inflight.pop(i, None)
                if reset or retry:
                    # Resend everything unacknowledged, in order, from the start of each class.
                    self._inflight.clear()
                    self._after = dict.fromkeys(CLASSES, 0)
            if acked:
                self.outbox.ack(acked)
            if sent:
                self.outbox.mark_sent(sent)
            for boot, ranges in released:
                self.outbox.release(boot, ranges)
            now = time.monotonic()
            if now - last_purge >= self.purge_every_s:
                last_purge = now
                self.outbox.purge_expired()
            if self.client.connected:
                if self.custody and now - last_resend >= self.resend_every_s:
                    last_resend = now
                    self._resend_due()
                self._send()

    def _resend_due(self) -> None:
        """Sent rows that no custody released in time: the broker may have lost them (a crash
        before its next save), so they go out again; downstream dedup absorbs the copies."""
        with self._cv:
            room = self.window - len(self._inflight)
            skip = set(self._inflight)
            quiet = time.monotonic() - self._last_custody
        if room <= 0 or self.custody_timeout_s <= quiet < self.custody_timeout_max_s:
            return
        rows = self.outbox.due_resends(time.time(), self.custody_timeout_s, self.custody_timeout_max_s, room, skip)
        for row in rows:
            self.counters.inc(f"outbox.resent.{row.cls}")
        self._publish(rows)

    def _send(self) -> None:
        with self._cv:
            room = self.window - len(self._inflight)
            after = dict(self._after)
        if room <= 0:
            return
        rows = self.outbox.next_rows(after, room)
        with self._cv:
            for row in rows:
                self._after[row.cls] = max(self._after[row.cls], row.id)
        if self._publish(rows) and len(rows) == room:
            self.notify()  # more may be waiting

    def _publish(self, rows: list[Row]) -> bool:
        """Publish rows into the window; False when the client refused (the window is reset)."""
        for row in rows:
            with self._cv:
                self._inflight[row.id] = row
            try:
                self.client.publish(Topic(row.topic), row.payload, qos=row.qos, response_topic=row.response_topic,
                                    correlation_data=row.correlation,
                                    on_ack=lambda rc, r=row: self._on_ack(r, rc))
            except PacketTooLarge:
                # Larger than this broker takes: retrying cannot help, and it must not hold up the rows
                # behind it. Dropped as a broker's refusal would drop it (0x95, packet too large).
                self._on_ack(row, PACKET_TOO_LARGE)
                continue
            except MqttError as exc:
                with self._cv:
                    self._inflight.pop(row.id, None)
                    self._reset = True
                self.counters.inc(f"outbox.publish_failed.{exc.reason}")
                if not self._stop.wait(0.05):
                    self.client.wait_connected(0.5)
                return False
        return True

    def _on_ack(self, row: Row, rc: int) -> None:
        if rc in _RETRY_CODES:
            self.counters.inc(f"outbox.retry.{row.cls}")
            with self._cv:
                self._retry.append(row.id)
                self._cv.notify()
            return
        if rc >= 0x80:
            self.counters.inc(f"outbox.denied.{row.cls}")
            log.warning("broker refused %s on %s (reason %#x); dropped", row.cls, row.topic, rc)
        else:
            self.counters.inc(f"outbox.sent.{row.cls}")
            if self.on_sent is not None:
                self.on_sent(row)
            if self.custody and row.qos > 0 and row.seq >= 0:
                with self._cv:
                    self._sent.append(row.id)  # kept until custody releases it
                    self._cv.notify()
                return
        with self._cv:
            self._acked.append(row.id)
            self._cv.notify()
