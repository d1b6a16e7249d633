"""Which packet a PUBACK or SUBACK acknowledges.

paho reuses packet ids after 65,535, PUBLISH and SUBSCRIBE share them, and an ack can arrive
before ``publish()``/``subscribe()`` has returned the id. So an ack that finds no registered
packet is *parked* with the count of packets started so far, and a packet registered later
takes it only if that packet had started before the ack arrived; otherwise the parked ack
belonged to an earlier packet with the same id and is counted stale (``mqtt.stale_acks``).
Parked acks and unanswered SUBSCRIBEs belong to their connection and are dropped when it is
lost; pending PUBLISHes stay, because paho sends them again and their PUBACKs still match.

Thread-safe; never calls out while holding its lock (callbacks are returned, not run).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from shared.process.counters import Counters

AckCallback = Callable[[int], None]
SubWaiter = tuple[threading.Event, list[int]]
_PARKED_MAX = 1024  # acks nobody claims (packets paho resent after a reconnect) age out beyond this
NOT_FOUND = object()


class AckMatcher:
    def __init__(self, counters: Counters) -> None:
        self.counters = counters
        self._lock = threading.Lock()
        self._pending: dict[int, AckCallback | None] = {}
        self._suback: dict[int, SubWaiter | None] = {}
        self._early: dict[int, tuple[int, str, object]] = {}  # mid -> (packets started then, kind, value)
        self._started = 0

    def begin(self) -> int:
        """Count a packet about to be handed to paho; returns its place in that order."""
        with self._lock:
            self._started += 1
            return self._started

    def expect_puback(self, mid: int, start: int, on_ack: AckCallback | None) -> object:
        """Register a PUBLISH; returns the reason code of an ack that already came for it, else NOT_FOUND."""
        with self._lock:
            early = self._claim(mid, start, "pub")
            if early is NOT_FOUND:
                self._pending[mid] = on_ack
        return early

    def expect_suback(self, mid: int, start: int, waiter: SubWaiter | None) -> object:
        """Register a SUBSCRIBE; returns the codes of a SUBACK that already came for it, else NOT_FOUND."""
        with self._lock:
            early = self._claim(mid, start, "sub")
            if early is NOT_FOUND:
                self._suback[mid] = waiter
        return early

    def forget_suback(self, mid: int, waiter: SubWaiter) -> None:
        """A waiter gives up (or is done): its entry, if still its own, goes."""
        with self._lock:
            if self._suback.get(mid) == waiter:
                del self._suback[mid]

    def puback(self, mid: int, value: int) -> object:
        """A PUBACK came: the registered callback (possibly None), or NOT_FOUND (then it is parked)."""
        with self._lock:
            if mid in self._pending:
                return self._pending.pop(mid)
            self._park(mid, "pub", value)
            return NOT_FOUND

    def suback(self, mid: int, codes: list[int]) -> SubWaiter | None:
        """A SUBACK came: the waiter to wake, if any (an unknown one is parked)."""
        with self._lock:
            known = mid in self._suback
            entry = self._suback.pop(mid, None)
            if not known:
                self._park(mid, "sub", codes)
        return entry

    def connection_lost(self) -> None:
        with self._lock:
            self._early.clear()
            self._suback.clear()

    def _claim(self, mid: int, start: int, kind: str) -> object:
        e = self._early.pop(mid, None)
        if e is None:
            return NOT_FOUND
        arrived, k, value = e
        if arrived < start or k != kind:
            # Parked before this packet existed: it acknowledged an earlier one with the same id.
            self.counters.inc("mqtt.stale_acks")
            return NOT_FOUND
        return value

    def _park(self, mid: int, kind: str, value: object) -> None:
        self._early[mid] = (self._started, kind, value)
        while len(self._early) > _PARKED_MAX:
            self._early.pop(next(iter(self._early)))
            self.counters.inc("mqtt.stale_acks")
