"""Priority scheduler: one bounded FIFO per class, TTL expiry, overflow policy, guaranteed shares.

Pure logic plus one lock: producers (MQTT network threads) ``put``, one dispatcher ``pop``s.
Items leave exactly one way: popped (returned), dropped (overflow) or expired (TTL); dropped
and expired ones are handed to ``on_discard(item, reason)`` *outside* the lock, so the
counts always add up: put == popped + dropped + expired + still queued.

Strict priority alone would starve labels forever under an event storm, so each class
earns ``share`` credit per dispatch while it waits behind a higher class; a class holding
a whole credit is served next. A class backlogged behind higher ones therefore gets at
least ``share`` of the dispatches, and the top class gets the rest.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any


class Item:
    """One queued message. ``deadline`` is on the scheduler's clock."""

    __slots__ = ("cls", "device", "t_in", "deadline", "payload")

    def __init__(self, cls: int, device: str, t_in: float, deadline: float, payload: Any = None) -> None:
        self.cls = cls
        self.device = device
        self.t_in = t_in
        self.deadline = deadline
        self.payload = payload

    def __repr__(self) -> str:
        return f"Item(cls={self.cls}, device={self.device!r}, t_in={self.t_in:.3f})"


class PriorityScheduler:
    def __init__(self, capacities: Sequence[int], shares: Sequence[float], overflow: Sequence[str],
                 *, on_discard: Callable[[Item, str], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, urgent: int | None = None) -> None:
        n = len(capacities)
        if not (len(shares) == len(overflow) == n) or n == 0:
            raise ValueError("one capacity, share and overflow policy per class")
        if sum(shares) >= 1:
            raise ValueError("shares must add up to less than 1")
        for o in overflow:
            if o not in ("drop_oldest", "drop_newest"):
                raise ValueError(f"unknown overflow policy {o!r}")
        self.n = n
        self.capacities = list(capacities)
        self.shares = list(shares)
        self.drop_newest = [o == "drop_newest" for o in overflow]
        self.on_discard = on_discard
        self.clock = clock
        # Classes below ``urgent`` wake the consumer at once; the others only at the next nudge(), so a
        # producer that queues a burst of bulk items (one socket read) wakes it once, not per item.
        self.urgent = n if urgent is None else urgent
        self._nudge = False
        self._q: list[deque[Item]] = [deque() for _ in range(n)]
        self._credit = [0.0] * n
        self._cv = threading.Condition()
        self._size = 0
        self.put_count = [0] * n
        self.popped = [0] * n
        self.dropped = [0] * n
        self.expired = [0] * n

    # ---- producer side ----------------------------------------------------
    def put(self, item: Item) -> bool:
        """Queue ``item``; False when it was itself shed (drop_newest on a full queue)."""
        victim = None
        c = item.cls
        with self._cv:
            self.put_count[c] += 1
            q = self._q[c]
            if len(q) >= self.capacities[c]:
                self.dropped[c] += 1
                if self.drop_newest[c]:
                    victim = item
                else:
                    victim = q.popleft()
                    q.append(item)
            else:
                q.append(item)
                self._size += 1
                if c < self.urgent:
                    self._cv.notify()
                else:
                    self._nudge = True
        if victim is not None and self.on_discard is not None:
            self.on_discard(victim, "dropped")
        return victim is not item

    def take_now(self, item: Item) -> bool | None:
        """Count ``item`` as queued and popped at once, if nothing of its class or above is waiting
        (so serving it now overtakes nobody): True, the producer processes it itself. False: ``put`` it.
        None: past its deadline already, counted expired and handed to ``on_discard`` (as pop would)."""
        c = item.cls
        with self._cv:
            q = self._q
            for k in range(c + 1):
                if q[k]:
                    return False
            self.put_count[c] += 1
            if item.deadline > self.clock():
                self.popped[c] += 1
                return True
            self.expired[c] += 1
        if self.on_discard is not None:
            self.on_discard(item, "expired")
        return None

    def push_front(self, item: Item) -> None:
        """Give a popped item back (e.g. its publish must wait for a reconnect); not counted as new."""
        with self._cv:
            self.popped[item.cls] -= 1
            self._q[item.cls].appendleft(item)
            self._size += 1
            self._cv.notify()

    # ---- consumer side ----------------------------------------------------
    def pop(self, timeout: float | None = 0.0) -> Item | None:
        """The next live item by priority and share, or None after ``timeout`` seconds of nothing."""
        expired: list[Item] = []
        try:
            with self._cv:
                deadline = None if timeout is None else self.clock() + timeout
                while True:
                    item = self._take(expired)
                    if item is not None:
                        return item
                    if timeout is not None:
                        left = deadline - self.clock()
                        if left <= 0:
                            return None
                    else:
                        left = None
                    # Expired items must be counted promptly even while we wait.
                    if expired:
                        return None
                    self._cv.wait(left)
        finally:
            if expired and self.on_discard is not None:
                for it in expired:
                    self.on_discard(it, "expired")

    def _choose(self) -> int:
        q, credit, shares = self._q, self._credit, self.shares
        top = -1
        pick = -1
        for c in range(self.n):
            if not q[c]:
                continue
            if top < 0:
                top = c
                continue
            cr = credit[c] + shares[c]
            credit[c] = cr if cr < 2.0 else 2.0
            if pick < 0 and cr >= 1.0:
                pick = c
        if pick >= 0:
            credit[pick] -= 1.0
            return pick
        return top

    def _take(self, expired: list[Item]) -> Item | None:
        now = self.clock()
        while self._size:
            c = self._choose()
            item = self._q[c].popleft()
            self._size -= 1
            if item.deadline <= now:
                self.expired[c] += 1
                expired.append(item)
                continue
            self.popped[c] += 1
            return item
        return None

    def sweep(self) -> int:
        """Expire overdue items at the head of every queue now (for prompt counters); returns how many."""
        expired: list[Item] = []
        now = self.clock()
        with self._cv:
            for c, q in enumerate(self._q):
                while q and q[0].deadline <= now:
                    expired.append(q.popleft())
                    self._size -= 1
                    self.expired[c] += 1
        if self.on_discard is not None:
            for it in expired:
                self.on_discard(it, "expired")
        return len(expired)

    def nudge(self) -> None:
        """Wake the consumer if bulk items were queued since the last nudge."""
        if self._nudge:
            with self._cv:
                self._nudge = False
                self._cv.notify()

    def wake(self) -> None:
        with self._cv:
            self._cv.notify_all()

    def depths(self) -> list[int]:
        with self._cv:
            return [len(q) for q in self._q]

    def oldest_age(self) -> list[float]:
        now = self.clock()
        with self._cv:
            return [now - q[0].t_in if q else 0.0 for q in self._q]

    def __len__(self) -> int:
        return self._size
