"""Escalations waiting for the cloud: a bounded table with deadlines, resolved exactly once.

A reply (network thread) and the deadline (inference thread) race for each entry; ``pop``
under one lock means whichever comes first wins and the other finds nothing.
"""

from __future__ import annotations

import heapq
import threading
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class PendingTable(Generic[T]):
    def __init__(self, max_pending: int) -> None:
        self.max_pending = max_pending
        self._items: OrderedDict[int, tuple[float, T]] = OrderedDict()
        self._heap: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def add(self, key: int, item: T, deadline: float) -> list[T]:
        """Insert; returns entries evicted (oldest first) to stay within max_pending."""
        evicted: list[T] = []
        with self._lock:
            self._items[key] = (deadline, item)
            heapq.heappush(self._heap, (deadline, key))
            while len(self._items) > self.max_pending:
                _, (_, old) = self._items.popitem(last=False)
                evicted.append(old)
        return evicted

    def pop(self, key: int) -> T | None:
        with self._lock:
            entry = self._items.pop(key, None)
        return None if entry is None else entry[1]

    def expired(self, now: float) -> list[T]:
        """Remove and return every entry whose deadline has passed."""
        out: list[T] = []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                deadline, key = heapq.heappop(self._heap)
                entry = self._items.get(key)
                if entry is not None and entry[0] == deadline:
                    del self._items[key]
                    out.append(entry[1])
        return out

    def next_deadline(self) -> float | None:
        with self._lock:
            while self._heap and self._heap[0][1] not in self._items:
                heapq.heappop(self._heap)
            return self._heap[0][0] if self._heap else None

    def drain(self) -> list[T]:
        with self._lock:
            items = [v for _, v in self._items.values()]
            self._items.clear()
            self._heap.clear()
        return items
