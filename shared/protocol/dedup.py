"""Exactly-once on top of at-least-once: drop messages already seen by (device, boot, seq).

QoS 1 redelivers after reconnects and the edge outbox replays old sequence numbers while
live ones flow, so a high-water mark would drop good late data. Instead each (device, boot)
keeps the exact set of seen sequence numbers as sorted disjoint intervals: a few entries
in the normal case, whatever the order of arrival.
"""

from __future__ import annotations

import bisect
import threading
from collections import OrderedDict


class SeqSet:
    """A set of non-negative ints stored as sorted, disjoint, non-adjacent [lo, hi] intervals."""

    __slots__ = ("_lo", "_hi")

    def __init__(self) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []

    def add(self, x: int) -> bool:
        """Insert ``x``; False if it was already present."""
        i = bisect.bisect_right(self._lo, x) - 1
        if i >= 0 and self._hi[i] >= x:
            return False
        join_left = i >= 0 and self._hi[i] == x - 1
        join_right = i + 1 < len(self._lo) and self._lo[i + 1] == x + 1
        if join_left and join_right:
            self._hi[i] = self._hi[i + 1]
            del self._lo[i + 1], self._hi[i + 1]
        elif join_left:
            self._hi[i] = x
        elif join_right:
            self._lo[i + 1] = x
        else:
            self._lo.insert(i + 1, x)
            self._hi.insert(i + 1, x)
        return True

    def add_range(self, lo: int, hi: int) -> None:
        """Insert every int in [lo, hi]."""
        if lo > hi:
            return
        i = bisect.bisect_left(self._hi, lo - 1)  # first interval that touches or follows lo
        j = bisect.bisect_right(self._lo, hi + 1)  # intervals before j start at or before hi + 1
        if i < j:
            lo, hi = min(lo, self._lo[i]), max(hi, self._hi[j - 1])
        self._lo[i:j] = [lo]
        self._hi[i:j] = [hi]

    def ranges(self) -> list[tuple[int, int]]:
        """The intervals, lowest first."""
        return list(zip(self._lo, self._hi, strict=True))

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self._lo, x) - 1
        return i >= 0 and self._hi[i] >= x

    @property
    def intervals(self) -> int:
        return len(self._lo)


class Deduper:
    """Thread-safe; remembers up to ``max_streams`` (device, boot) pairs, least recently used out."""

    def __init__(self, max_streams: int = 100_000) -> None:
        self._sets: OrderedDict[tuple[str, int], SeqSet] = OrderedDict()
        self._max = max_streams
        self._lock = threading.Lock()
        self.duplicates = 0

    def first_time(self, device: str, boot: int, seq: int) -> bool:
        """True the first time a key is seen; False (and counted) for a duplicate."""
        key = (device, boot)
        with self._lock:
            s = self._sets.get(key)
            if s is None:
                s = self._sets[key] = SeqSet()
                if len(self._sets) > self._max:
                    self._sets.popitem(last=False)
            else:
                self._sets.move_to_end(key)
            if s.add(seq):
                return True
            self.duplicates += 1
            return False
