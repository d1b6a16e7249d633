"""The replay buffer: bounded, class-balanced rows of labelled data, pure (no I/O, no torch).
Owned by the learner thread; only :class:`Audit` is also read from other threads.

Ground truth comes first: when a class is full a pseudo-labelled row is evicted before any
ground-truth row, a pseudo label never overwrites a true one, and a true label arriving
later upgrades the row. Rows are keyed by (device, sample id), so the same sample seen as a
feature row, a hard sample and a label is stored once per store.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Key = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Row:
    key: Key
    label: int
    weight: float
    pseudo: bool
    data: np.ndarray  # a feature vector (feature store), or a raw sample as it travelled (raw store)
    version: int  # edge model version that produced ``data`` (features) or escalated the sample (raw)


class BalancedStore:
    """At most ``capacity // n_classes`` rows per class (at least 1)."""

    def __init__(self, capacity: int, n_classes: int, on_evict: Callable[[Key], None] | None = None) -> None:
        self.n_classes = n_classes
        self.per_class = max(1, capacity // n_classes)
        self._by_class: list[OrderedDict[Key, Row]] = [OrderedDict() for _ in range(n_classes)]
        self._where: dict[Key, int] = {}
        self.evicted = 0
        self.on_evict = on_evict  # told of every row that leaves to make room (not of replacements)

    def add(self, row: Row) -> bool:
        """Insert or upgrade; returns False when the row was refused (pseudo over ground truth)."""
        if not 0 <= row.label < self.n_classes:
            raise ValueError(f"label {row.label} outside 0..{self.n_classes - 1}")
        old_cls = self._where.get(row.key)
        if old_cls is not None:
            old = self._by_class[old_cls][row.key]
            if row.pseudo and not old.pseudo:
                return False
            del self._by_class[old_cls][row.key]
            del self._where[row.key]
        bucket = self._by_class[row.label]
        if len(bucket) >= self.per_class:
            victim = next((k for k, r in bucket.items() if r.pseudo), None)
            if victim is None:
                if row.pseudo:
                    return False  # a full class of ground truth does not make room for a guess
                victim = next(iter(bucket))
            del bucket[victim]
            del self._where[victim]
            self.evicted += 1
            if self.on_evict is not None:
                self.on_evict(victim)
        bucket[row.key] = row
        self._where[row.key] = row.label
        return True

    def remove(self, key: Key) -> Row | None:
        """Take a row out (a correction retracted or moved its label); returns it."""
        cls = self._where.pop(key, None)
        return None if cls is None else self._by_class[cls].pop(key)

    def get(self, key: Key) -> Row | None:
        cls = self._where.get(key)
        return None if cls is None else self._by_class[cls][key]

    def __contains__(self, key: Key) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def rows(self) -> list[Row]:
        return [r for b in self._by_class for r in b.values()]

    def counts(self) -> dict[str, int]:
        rows = self.rows()
        pseudo = sum(r.pseudo for r in rows)
        return {"rows": len(rows), "ground_truth": len(rows) - pseudo, "pseudo": pseudo}


class Pending:
    """Hard samples waiting for a label: bounded, oldest dropped first (counted)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._d: OrderedDict[Key, tuple[np.ndarray, int, float]] = OrderedDict()
        self.dropped = 0

    def put(self, key: Key, x: np.ndarray, label: int, conf: float) -> None:
        self._d[key] = (x, label, conf)
        self._d.move_to_end(key)
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)
            self.dropped += 1

    def pop(self, key: Key) -> tuple[np.ndarray, int, float] | None:
        return self._d.pop(key, None)

    def get(self, key: Key) -> tuple[np.ndarray, int, float] | None:
        return self._d.get(key)

    def __len__(self) -> int:
        return len(self._d)


class Audit:
    """Rolling edge accuracy (edge_label vs ground truth) per edge model version, beside what the
    edge's calibrated confidence on those same rows expected it to be.

    Which samples get labels is not random: a person labels what the console's queue shows, the most
    uncertain first. The accuracy on those rows is low by design, so comparing it with the holdout
    accuracy would cry drift all day. The confidence the (calibrated) model had on the same rows says
    what to expect of them; drift is accuracy falling below *that*.

    Locked: the status thread reads it while the learner thread appends (iterating a deque
    that another thread extends raises)."""

    def __init__(self, window: int = 500) -> None:
        self.window = window
        self._hits: dict[int, deque[tuple[bool, float]]] = {}
        self._lock = threading.Lock()

    def add(self, version: int, correct: np.ndarray, conf: np.ndarray | None = None) -> None:
        conf = np.full(len(correct), np.nan) if conf is None else np.asarray(conf, np.float64)
        with self._lock:
            d = self._hits.setdefault(int(version), deque(maxlen=self.window))
            d.extend((bool(c), float(p)) for c, p in zip(correct, conf, strict=True))

    def accuracy(self, version: int) -> tuple[float, int]:
        acc, n, _ = self.read(version)
        return acc, n

    def read(self, version: int) -> tuple[float, int, float | None]:
        """(accuracy, rows, expected accuracy from the confidences; None when some rows lack one)."""
        with self._lock:
            d = list(self._hits.get(int(version), ()))
        if not d:
            return 0.0, 0, None
        confs = [p for _, p in d]
        expected = None if any(p != p for p in confs) else sum(confs) / len(confs)
        return sum(c for c, _ in d) / len(d), len(d), expected
