"""A bounded FIFO that never blocks the producer: when full it drops (and counts) the oldest item."""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class DropOldestQueue(Generic[T]):
    """Bounded queue for live data, where a fresh item is worth more than a stale one."""

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._q: deque[T] = deque()
        self._cv = threading.Condition()
        self.dropped = 0
        self.put_count = 0

    def put(self, item: T) -> T | None:
        """Append; returns the item dropped to make room, if any."""
        with self._cv:
            dropped = None
            if len(self._q) >= self.maxsize:
                dropped = self._q.popleft()
                self.dropped += 1
            self._q.append(item)
            self.put_count += 1
            self._cv.notify()
            return dropped

    def get(self, timeout: float | None = None) -> T | None:
        """Pop the oldest item, or None after ``timeout`` seconds with nothing to pop."""
        with self._cv:
            if not self._q and not self._cv.wait_for(lambda: bool(self._q), timeout=timeout):
                return None
            return self._q.popleft()

    def drain(self) -> list[T]:
        with self._cv:
            items = list(self._q)
            self._q.clear()
            return items

    def __len__(self) -> int:
        with self._cv:
            return len(self._q)
