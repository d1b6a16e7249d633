"""The label outbox on disk: labels a publisher has not seen taken into custody survive its restart.

A person's labels are the dearest input Lepton has, and the console is a process that gets restarted
(an upgrade, a crash, `compose restart`). :class:`LabelJournal` keeps a copy of every message a
:class:`shared.stores.label_outbox.LabelOutbox` holds, written when the outbox keeps or changes it and
deleted when custody covers it or it is given up. At start the outbox takes back what an earlier boot
left, in order, and stamps it again under its own boot: the bridge keeps custody per (publisher,
boot), and a label that arrives twice is the same (device, sample) label, learned once at the worker.

SQLite in WAL mode with ``synchronous=NORMAL``, as the agent's outbox: durable across a crash of
the process, only power loss may cost the last commits. A file that is not a readable database is
moved aside (``*.unreadable-<time>``) and counted, so the console still starts; a write that fails
(disk full) is counted and the label stays in memory.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable
from pathlib import Path

from shared.process.counters import Counters

log = logging.getLogger(__name__)

_SCHEMA = "CREATE TABLE IF NOT EXISTS kept (boot INTEGER NOT NULL, seq INTEGER NOT NULL, body BLOB NOT NULL, " \
          "PRIMARY KEY (boot, seq))"


class LabelJournal:
    def __init__(self, path: Path, counters: Counters | None = None) -> None:
        self.path = Path(path)
        self.counters = counters or Counters()
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None

    def open(self) -> LabelJournal:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            self._db = self._connect()
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.unreadable-{int(time.time())}")
            log.warning("label journal %s is unreadable (%s): moved to %s, starting an empty one",
                        self.path, exc, aside)
            self.path.rename(aside)
            for suffix in ("-wal", "-shm"):
                self.path.with_name(self.path.name + suffix).unlink(missing_ok=True)
            self.counters.inc("labels.journal_unreadable")
            self._db = self._connect()
        return self

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            db.execute("SELECT COUNT(*) FROM kept").fetchone()
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def left_over(self, boot: int) -> list[bytes]:
        """What boots other than ``boot`` kept, oldest boot first, each in its order."""
        with self._lock:
            db = self._require()
            try:
                return [bytes(r[0]) for r in db.execute("SELECT body FROM kept WHERE boot != ? ORDER BY boot, seq",
                                                        (boot,))]
            except sqlite3.Error as exc:
                self.counters.inc("labels.journal_errors")
                log.warning("label journal %s: what the last run kept cannot be read: %s", self.path, exc)
                return []

    def drop_other_boots(self, boot: int) -> None:
        self._write("DELETE FROM kept WHERE boot != ?", [(boot,)])

    def put(self, boot: int, seq: int, body: bytes) -> None:
        self._write("INSERT OR REPLACE INTO kept (boot, seq, body) VALUES (?,?,?)", [(boot, seq, body)])

    def delete(self, boot: int, seqs: Iterable[int]) -> None:
        rows = [(boot, s) for s in seqs]
        if rows:
            self._write("DELETE FROM kept WHERE boot = ? AND seq = ?", rows)

    def __len__(self) -> int:
        with self._lock:
            return int(self._require().execute("SELECT COUNT(*) FROM kept").fetchone()[0])

    def _write(self, sql: str, rows: list[tuple]) -> None:
        with self._lock:
            db = self._require()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany(sql, rows)
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                # The message is still kept in memory; only a restart before custody would lose it.
                self.counters.inc("labels.journal_errors")
                log.warning("label journal %s: %s", self.path, exc)

    def _require(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("label journal is not open")
        return self._db
