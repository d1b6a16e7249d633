"""Thread-safe monotonic counters, keyed by dotted names (``rejected.feat.truncated``)."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    __slots__ = ("_lock", "_c")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: Counter[str] = Counter()

    def inc(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def get(self, key: str) -> int:
        with self._lock:
            return self._c.get(key, 0)

    def total(self, prefix: str) -> int:
        """Sum of every counter whose key starts with ``prefix``."""
        with self._lock:
            return sum(v for k, v in self._c.items() if k.startswith(prefix))

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._c)
