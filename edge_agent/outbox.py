"""Store and forward: a SQLite (WAL) outbox for data that must survive a broker outage or a reboot.

Every QoS 1 message (event, hard, feat) is written here first; telemetry lands here only while
offline. A QoS 1 row lives until it is in *custody* downstream (docs/PROTOCOL.md, "Delivery
guarantee"): the broker's PUBACK only marks it sent (``mark_sent``), because a broker
acknowledges from memory and a crash before its next save loses what it held. The bridge's
custody message releases it (``release``); a sent row that no custody message releases within
its timeout is handed out again (``due_resends``), with the timeout doubling per attempt. With
custody off a PUBACK deletes the row (``ack``), for a broker that acknowledges only what is on
disk. Policy, exactly:

- **Bounded by bytes.** A message that would push the total past ``max_bytes`` makes room by
  evicting the oldest rows of the *lowest-priority* class first (telemetry, then feat, then
  hard, then event), never of a class above the newcomer's. If that cannot free enough, the
  newcomer itself is refused. So features and telemetry are dropped oldest-first and
  events are kept longest. Every eviction and refusal is counted by class.
- **Per-class TTL.** Rows older than their class's TTL are purged (counted) instead of sent.
- **Order.** Within a class rows are handed out by insertion id; classes by priority
  (event > hard > feat > telemetry), so alerts go first while a backlog drains.
- Each row keeps (boot, seq) of the payload it carries, the dedup key downstream.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from shared.process.counters import Counters

log = logging.getLogger(__name__)

CLASSES = ("event", "hard", "feat", "telemetry")  # send priority, highest first
RANK = {c: i for i, c in enumerate(CLASSES)}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cls TEXT NOT NULL,
    topic TEXT NOT NULL,
    qos INTEGER NOT NULL,
    payload BLOB NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    boot INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    response_topic TEXT,
    correlation BLOB
);
CREATE INDEX IF NOT EXISTS outbox_cls_id ON outbox (cls, id);
"""
# Added with custody; an outbox file from an earlier build gets them on open.
_COLUMNS = {"sent_at": "REAL", "attempts": "INTEGER NOT NULL DEFAULT 0"}
_INDEXES = """
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (cls, id) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS outbox_key ON outbox (boot, seq);
"""
_ROW = "id, cls, topic, qos, payload, created, boot, seq, response_topic, correlation, attempts"


@dataclass(frozen=True, slots=True)
class Row:
    id: int
    cls: str
    topic: str
    qos: int
    payload: bytes
    created: float
    boot: int
    seq: int
    response_topic: str | None
    correlation: bytes | None
    attempts: int = 0  # times the broker acknowledged it without custody following


class Outbox:
    """Thread-safe (one connection behind a lock; every operation is a short transaction)."""

    def __init__(self, path: Path, *, max_bytes: int, ttl_s: dict[str, float] | None = None,
                 counters: Counters | None = None, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.ttl_s = dict(ttl_s or {})
        self.counters = counters or Counters()
        self._clock = clock
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._bytes: dict[str, int] = dict.fromkeys(CLASSES, 0)
        self._rows: dict[str, int] = dict.fromkeys(CLASSES, 0)
        self._custodied: dict[str, int] = dict.fromkeys(CLASSES, 0)
        self._last_warn = -1e9

    # ---- lifecycle ----------------------------------------------------------
    def open(self) -> Outbox:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode is durable across a process crash; only power loss may cost the last commits.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        have = {r[1] for r in db.execute("PRAGMA table_info(outbox)")}
        for col, decl in _COLUMNS.items():
            if col not in have:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {col} {decl}")
        db.executescript(_INDEXES)
        # One aggregate over the (cls, id) index: fast even with a large backlog; rows are not loaded.
        for cls, n, b in db.execute("SELECT cls, COUNT(*), COALESCE(SUM(size), 0) FROM outbox GROUP BY cls"):
            if cls in self._rows:
                self._rows[cls], self._bytes[cls] = int(n), int(b)
        self._db = db
        return self

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # ---- state ----------------------------------------------------------------
    def depth(self, cls: str | None = None) -> int:
        with self._lock:
            return self._rows[cls] if cls else sum(self._rows.values())

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._bytes.values())

    # ---- writes ------------------------------------------------------------------
    def put(self, cls: str, topic: str, payload: bytes, *, qos: int, boot: int, seq: int,
            response_topic: str | None = None, correlation: bytes | None = None) -> bool:
        """Store a message; False when the overflow policy refused it (counted)."""
        if cls not in RANK:
            raise ValueError(f"unknown outbox class {cls!r}")
        size = len(payload)
        with self._lock:
            db = self._require()
            try:
                if size > self.max_bytes or not self._make_room(db, cls, size):
                    self.counters.inc(f"outbox.refused.{cls}")
                    return False
                db.execute("INSERT INTO outbox (cls, topic, qos, payload, size, created, boot, seq, response_topic,"
                           " correlation) VALUES (?,?,?,?,?,?,?,?,?,?)",
                           (cls, topic, qos, payload, size, self._clock(), boot, seq, response_topic, correlation))
            except sqlite3.Error as exc:
                # Disk full or a damaged file: this message is lost (counted), the device keeps working.
                self.counters.inc(f"outbox.errors.{cls}")
                self._warn(exc)
                return False
            self._rows[cls] += 1
            self._bytes[cls] += size
        self.counters.inc(f"outbox.stored.{cls}")
        return True

    def _make_room(self, db: sqlite3.Connection, cls: str, size: int) -> bool:
        need = sum(self._bytes.values()) + size - self.max_bytes
        if need <= 0:
            return True
        victims = [c for c in reversed(CLASSES) if RANK[c] >= RANK[cls]]
        if sum(self._bytes[c] for c in victims) < need:
            return False
        db.execute("BEGIN IMMEDIATE")
        try:
            for victim in victims:
                if need <= 0:
                    break
                ids: list[int] = []
                freed = 0
                for rid, rsize in db.execute("SELECT id, size FROM outbox WHERE cls=? ORDER BY id", (victim,)):
                    ids.append(rid)
                    freed += rsize
                    if freed >= need:
                        break
                db.executemany("DELETE FROM outbox WHERE id=?", [(i,) for i in ids])
                self._rows[victim] -= len(ids)
                self._bytes[victim] -= freed
                need -= freed
                if ids:
                    self.counters.inc(f"outbox.evicted.{victim}", len(ids))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        return True

    def ack(self, ids: Iterable[int]) -> int:
        """Delete delivered rows; returns how many existed (evicted or purged ones may be gone)."""
        ids = list(ids)
        if not ids:
            return 0
        with self._lock:
            db = self._require()
            gone = 0
            db.execute("BEGIN IMMEDIATE")
            for i in ids:
                row = db.execute("DELETE FROM outbox WHERE id=? RETURNING cls, size", (i,)).fetchone()
                if row is not None:
                    self._rows[row[0]] -= 1
                    self._bytes[row[0]] -= row[1]
                    gone += 1
            db.execute("COMMIT")
        return gone

    def mark_sent(self, ids: Iterable[int], now: float | None = None) -> None:
        """The broker acknowledged these rows: keep them, awaiting custody, until ``release``."""
        ids = list(ids)
        if not ids:
            return
        now = self._clock() if now is None else now
        with self._lock:
            db = self._require()
            db.execute("BEGIN IMMEDIATE")
            db.executemany("UPDATE outbox SET sent_at=?, attempts=attempts+1 WHERE id=?", [(now, i) for i in ids])
            db.execute("COMMIT")

    def release(self, boot: int, ranges: Iterable[tuple[int, int]]) -> int:
        """Custody: delete the QoS 1 rows of ``boot`` whose seq lies in ``ranges``; returns how many."""
        gone = 0
        with self._lock:
            db = self._require()
            db.execute("BEGIN IMMEDIATE")
            for lo, hi in ranges:
                for cls, size in db.execute(
                        "DELETE FROM outbox WHERE boot=? AND seq BETWEEN ? AND ? AND qos>0 RETURNING cls, size",
                        (boot, lo, hi)).fetchall():
                    self._rows[cls] -= 1
                    self._bytes[cls] -= size
                    self._custodied[cls] += 1
                    gone += 1
            db.execute("COMMIT")
        if gone:
            self.counters.inc("outbox.custody_released", gone)
        return gone

    def due_resends(self, now: float, first: float, cap: float, limit: int,
                    skip: frozenset[int] | set[int] = frozenset()) -> list[Row]:
        """Sent rows no custody released in time: after ``first`` seconds, doubling per attempt up to ``cap``."""
        out: list[Row] = []
        with self._lock:
            db = self._require()
            cur = db.execute(f"SELECT {_ROW}, sent_at FROM outbox WHERE sent_at IS NOT NULL AND sent_at <= ?"
                             " ORDER BY sent_at", (now - first,))
            for r in cur:
                if r[0] in skip:
                    continue
                wait = min(cap, first * (2 ** max(0, r[10] - 1)))
                if r[11] <= now - wait:
                    out.append(_row(r))
                    if len(out) >= limit:
                        break
        return out

    def unsent(self, classes: tuple[str, ...]) -> int:
        """Rows of these classes not yet published: the backlog that the link has not drained."""
        with self._lock:
            db = self._require()
            return sum(int(db.execute("SELECT COUNT(*) FROM outbox WHERE cls=? AND sent_at IS NULL",
                                      (c,)).fetchone()[0]) for c in classes if self._rows.get(c))

    def awaiting_custody(self) -> int:
        with self._lock:
            return int(self._require().execute("SELECT COUNT(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0])

    def purge_expired(self) -> int:
        now = self._clock()
        total = 0
        with self._lock:
            db = self._require()
            for cls, ttl in self.ttl_s.items():
                if cls not in RANK or not self._rows[cls]:
                    continue
                row = db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM outbox WHERE cls=? AND created<?",
                                 (cls, now - ttl)).fetchone()
                if row[0]:
                    db.execute("DELETE FROM outbox WHERE cls=? AND created<?", (cls, now - ttl))
                    self._rows[cls] -= row[0]
                    self._bytes[cls] -= row[1]
                    self.counters.inc(f"outbox.expired.{cls}", row[0])
                    total += row[0]
        return total

    # ---- reads -------------------------------------------------------------------
    def next_rows(self, after: dict[str, int], limit: int) -> list[Row]:
        """Up to ``limit`` never-acknowledged rows, highest-priority class first, each class in id order
        after ``after[cls]``."""
        out: list[Row] = []
        with self._lock:
            db = self._require()
            for cls in CLASSES:
                if len(out) >= limit:
                    break
                if not self._rows[cls]:
                    continue
                cur = db.execute(f"SELECT {_ROW} FROM outbox WHERE cls=? AND id>? AND sent_at IS NULL ORDER BY id"
                                 " LIMIT ?", (cls, after.get(cls, 0), limit - len(out)))
                out.extend(_row(r) for r in cur)
        return out

    @property
    def custodied(self) -> dict[str, int]:
        """Rows released by custody since open, per class."""
        with self._lock:
            return dict(self._custodied)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._last_warn > 60:  # a full disk would otherwise log per message
            self._last_warn = now
            log.error("outbox %s: %s", self.path, exc)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("outbox is not open")
        return self._db


def _row(r: tuple) -> Row:
    return Row(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7], r[8], None if r[9] is None else bytes(r[9]),
               r[10])
