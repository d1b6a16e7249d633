"""The raw samples the worker learns from: bounded, class-balanced, on disk, with their model inputs cached.

Rows are the samples as they travelled (a JPEG file, a float16 window), keyed by (device, sample):
ground truth from a person or app, or *pseudo* rows (an escalation the cloud answered, a window that
came with its feature row) whose label is the cloud's and whose loss the edge learns from the
cloud's soft answer (distillation). Ground truth is kept first (:class:`BalancedStore`).

Each row's two model inputs, the edge's (``task.preprocess``) and the cloud's (its own contract),
are computed once, when the row arrives, and kept as float16 beside it: training passes over the
rows many times, and decoding a JPEG costs as much as a forward pass.

Persistence is a SQLite file per task (``raw.sqlite`` in the registry), written through on every
change and committed by :meth:`save`, the learner's save point before it acknowledges fused
batches: the whole buffer is never rewritten, so holding thousands of frames costs one row's write
each. A restarted worker reloads the rows and recomputes their inputs.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np

from cloud_worker.learning.buffer import BalancedStore, Key, Row
from shared.protocol import rawsample
from shared.protocol.rawsample import RawError

log = logging.getLogger(__name__)

# (raw sample as it travelled, its wire encoding) -> (edge input, cloud input), each without the batch axis
Prepare = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]

_SCHEMA = """CREATE TABLE IF NOT EXISTS raw (
    device TEXT NOT NULL, sample INTEGER NOT NULL, label INTEGER NOT NULL, weight REAL NOT NULL,
    pseudo INTEGER NOT NULL, version INTEGER NOT NULL, wire TEXT NOT NULL, dtype TEXT NOT NULL,
    shape TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY (device, sample))"""


class RawStore:
    def __init__(self, capacity: int, n_classes: int, prepare: Prepare, path: Path | None = None) -> None:
        self.rows = BalancedStore(capacity, n_classes, on_evict=self._forget)
        self.prepare = prepare
        self.path = path
        self._wire: dict[Key, str] = {}
        self._edge_x: dict[Key, np.ndarray] = {}
        self._cloud_x: dict[Key, np.ndarray] = {}
        self._db: sqlite3.Connection | None = None
        self.rejected: dict[str, int] = {}
        self._arrived: dict[Key, int] = {}  # key -> when it was stored (or became ground truth), a counter
        self._clock = 0

    # ---- rows ---------------------------------------------------------------------
    def add(self, row: Row, wire: str, inputs: tuple[np.ndarray, np.ndarray] | None = None) -> bool:
        """Store a row (``row.data`` the raw sample as it travelled); ``inputs`` when the caller already
        prepared them. False when refused: a guess over ground truth, or a sample that cannot be decoded
        (counted in ``rejected`` by reason)."""
        if inputs is None:
            try:
                inputs = self.prepare(row.data, wire)
            except (RawError, ValueError) as exc:
                reason = exc.reason if isinstance(exc, RawError) else "bad_input"
                self.rejected[reason] = self.rejected.get(reason, 0) + 1
                return False
        if not self.rows.add(row):
            return False
        self._wire[row.key] = wire
        self._clock += 1
        self._arrived[row.key] = self._clock
        self._edge_x[row.key] = np.asarray(inputs[0], np.float16)
        self._cloud_x[row.key] = np.asarray(inputs[1], np.float16)
        if self._db is not None:
            d = np.ascontiguousarray(row.data)
            self._db.execute("INSERT OR REPLACE INTO raw VALUES (?,?,?,?,?,?,?,?,?,?)",
                             (row.key[0], row.key[1], row.label, row.weight, int(row.pseudo), row.version, wire,
                              d.dtype.str, ",".join(map(str, d.shape)), d.tobytes()))
        return True

    def relabel(self, key: Key, label: int) -> bool:
        """Ground truth for a row held as a guess (or a corrected label); False when the row is not here."""
        old = self.rows.get(key)
        if old is None:
            return False
        if not old.pseudo and old.label == label:
            return True
        row = Row(key, label, 1.0, False, old.data, old.version)
        return self.add(row, self._wire[key], (self._edge_x[key], self._cloud_x[key]))

    def remove(self, key: Key) -> None:
        """Take a sample out (its label was retracted)."""
        if self.rows.remove(key) is not None:
            self._forget(key)

    def _forget(self, key: Key) -> None:
        self._wire.pop(key, None)
        self._arrived.pop(key, None)
        self._edge_x.pop(key, None)
        self._cloud_x.pop(key, None)
        if self._db is not None:
            self._db.execute("DELETE FROM raw WHERE device = ? AND sample = ?", key)

    def get(self, key: Key) -> Row | None:
        return self.rows.get(key)

    def __contains__(self, key: Key) -> bool:
        return key in self.rows

    def __len__(self) -> int:
        return len(self.rows)

    def all(self) -> list[Row]:
        return self.rows.rows()

    def truth(self) -> list[Row]:
        """Ground-truth rows, oldest first (by when they became ground truth)."""
        rows = [r for r in self.rows.rows() if not r.pseudo]
        rows.sort(key=lambda r: self._arrived.get(r.key, 0))
        return rows

    def counts(self) -> dict[str, int]:
        return self.rows.counts()

    def edge_inputs(self, rows: list[Row]) -> np.ndarray:
        return np.stack([self._edge_x[r.key] for r in rows]) if rows else np.zeros((0,), np.float16)

    def cloud_inputs(self, rows: list[Row]) -> np.ndarray:
        return np.stack([self._cloud_x[r.key] for r in rows]) if rows else np.zeros((0,), np.float16)

    def raw_item(self, key: Key) -> tuple[np.ndarray, str] | None:
        row = self.rows.get(key)
        return None if row is None else (row.data, self._wire[key])

    # ---- disk ---------------------------------------------------------------------
    def open(self) -> int:
        """Open (or create) the SQLite file and load its rows; returns how many came back."""
        if self.path is None:
            return 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level="DEFERRED")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(_SCHEMA)
        db.commit()
        loaded = 0
        for dev, sample, label, weight, pseudo, version, wire, dtype, shape, data in db.execute(
                "SELECT device, sample, label, weight, pseudo, version, wire, dtype, shape, data FROM raw "
                "ORDER BY rowid"):
            try:
                dims = tuple(int(s) for s in shape.split(",") if s)
                arr = np.frombuffer(data, np.dtype(dtype)).reshape(dims)
            except (ValueError, TypeError) as exc:
                log.warning("raw store %s: skipping a row that does not read back: %s", self.path, exc)
                continue
            if not 0 <= label < self.rows.n_classes:
                continue
            if self.add(Row((str(dev), int(sample)), int(label), float(weight), bool(pseudo), arr, int(version)), wire):
                loaded += 1
        self._db = db  # after loading: the rows read are already on disk
        return loaded

    def save(self) -> None:
        """Make every change since the last save durable (the learner acknowledges after this)."""
        if self._db is not None:
            self._db.commit()

    def close(self) -> None:
        if self._db is not None:
            self._db.commit()
            self._db.close()
            self._db = None


def decode_item(item: np.ndarray, wire: str) -> np.ndarray:
    """A stored raw sample back to what a source produced (typed RawError when it cannot be)."""
    return rawsample.decode(item, wire)  # type: ignore[arg-type]
