"""Fusion: feature rows ⋈ labels ⋈ hub context -> FusedBatch per task. Pure logic, clock passed in.

Join key: (device, sample id). A row's life:

1. it arrives (``add_features``) and takes any label that came first (held up to ``window``);
2. it waits ``label_wait`` seconds for a label that is a little behind;
3. it joins its task's batch, sent when ``batch_size`` rows are there or the oldest row
   has waited ``batch_age`` (rows of another feature width go to their own batch);
4. once sent it is remembered ``window`` seconds: a label arriving then is sent as a
   *label-only row* (the stored features again, ``late_label`` = 1) in a later batch;
5. after that only its key is remembered (tombstone), so a label still later is counted as
   ``labels.late`` instead of being held for a row that will never come.

Every label item ends in exactly one counter: ``labels.joined`` (before its row was sent),
``labels.joined_late`` (label-only row), ``labels.duplicate`` (same label already sent),
``labels.late`` (beyond the window), ``labels.unmatched`` (no row within the window),
``labels.evicted`` (pending store full) or ``labels.task_mismatch``.

Opaque ``refs`` (the bridge's ack tokens) ride along with rows and labels and come back in
``Emitted.refs`` (to be released once the batch is acknowledged) or via ``release``. Each row
also remembers the device message it came in (``src``, its (device, boot, seq)); ``Emitted.src``
counts a batch's rows per message, for custody (hub_bridge/custody.py).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hub_bridge.config import FusionSettings
from hub_bridge.context import ContextBuilder
from shared.containers import FeatureBatch, FusedBatch
from shared.counters import Counters
from shared.schemas import Labels


class Row:
    __slots__ = ("device", "task", "sample", "feat", "edge_label", "edge_conf", "mv", "ctx", "label", "t_in",
                 "late", "refs", "sent", "src")

    def __init__(self, device: str, task: str, sample: int, feat: np.ndarray, edge_label: int, edge_conf: float,
                 mv: int, ctx: np.ndarray, label: int, t_in: float, late: bool = False) -> None:
        self.device = device
        self.task = task
        self.sample = sample
        self.feat = feat
        self.edge_label = edge_label
        self.edge_conf = edge_conf
        self.mv = mv
        self.ctx = ctx
        self.label = label
        self.t_in = t_in
        self.late = late
        self.refs: list[Any] = []
        self.sent = 0.0
        self.src: Any = None


@dataclass(frozen=True, slots=True)
class Emitted:
    batch: FusedBatch
    refs: list[Any]
    src: Counter  # device message (device, boot, seq) -> its rows in this batch (label-only rows excluded)
    samples: list[tuple[str, int]]  # (device, sample) of those rows


class _Builder:
    __slots__ = ("rows", "t_first")

    def __init__(self) -> None:
        self.rows: list[Row] = []
        self.t_first = 0.0


class Fuser:
    def __init__(self, cfg: FusionSettings, bridge_id: str, context: ContextBuilder | None = None, *,
                 counters: Counters | None = None, release: Callable[[Any], None] | None = None,
                 boot: int = 0) -> None:
        self.cfg = cfg
        self.bridge_id = bridge_id
        self.boot = boot
        self.context = context or ContextBuilder(list(cfg.context), cfg.devices, cfg.meta_default)
        self.counters = counters or Counters()
        self._release = release or (lambda ref: None)
        self.seq = 0
        self._live: dict[tuple[str, int], Row] = {}  # arrived, not yet sent
        self._waiting: deque[Row] = deque()  # live rows still inside label_wait, by arrival
        self._pending: OrderedDict[tuple[str, int], tuple[int, str, float, Any]] = OrderedDict()
        self._recent: OrderedDict[tuple[str, int], Row] = OrderedDict()  # sent, within window
        self._tomb: OrderedDict[tuple[str, int], None] = OrderedDict()
        self._builders: dict[tuple[str, int], _Builder] = {}

    # ---- inputs -----------------------------------------------------------
    def add_features(self, fb: FeatureBatch, now: float, ref: Any = None, hold: Callable[[Any], None] | None = None,
                     src: Any = None) -> int:
        """Take the rows of one FeatureBatch; returns how many rows were new."""
        n = fb.sample.shape[0]
        if n == 0:
            return 0
        scores = np.asarray(fb.scores, np.float32)
        feat = np.asarray(fb.feat, np.float32)
        edge_label = scores.argmax(axis=1)
        edge_conf = scores.max(axis=1)
        ctx = self.context.rows(fb.device, fb.ts, now)
        dev, task, mv = fb.device, fb.task, fb.model_version
        live, recent, pending = self._live, self._recent, self._pending
        new = 0
        for i, s in enumerate(fb.sample.tolist()):
            key = (dev, s)
            if key in live or key in recent:
                self.counters.inc("rows.duplicate")
                continue
            row = Row(dev, task, s, feat[i], int(edge_label[i]), float(edge_conf[i]), mv, ctx[i], -1, now)
            row.src = src
            if ref is not None:
                row.refs.append(ref)
                if hold is not None:
                    hold(ref)
            p = pending.pop(key, None)
            if p is not None:
                label, ltask, _, lref = p
                if ltask == task:
                    row.label = label
                    self.counters.inc("labels.joined")
                    self.counters.inc("labels.joined_before")
                else:
                    self.counters.inc("labels.task_mismatch")
                if lref is not None:
                    row.refs.append(lref)
            live[key] = row
            new += 1
            if self.cfg.label_wait > 0:
                self._waiting.append(row)
            else:
                self._to_builder(row, now)
        self.counters.inc("rows.in", new)
        while len(self._waiting) > self.cfg.max_waiting_rows:
            self.counters.inc("rows.batched_early")
            self._to_builder(self._waiting.popleft(), now)
        return new

    def add_labels(self, lb: Labels, now: float, ref: Any = None, hold: Callable[[Any], None] | None = None) -> None:
        self._expire(now)
        for item in lb.items:
            key = (lb.device, item.sample)
            row = self._live.get(key)
            if row is not None:
                if row.task != lb.task:
                    self.counters.inc("labels.task_mismatch")
                    continue
                if row.label == item.label:
                    self.counters.inc("labels.duplicate")
                    continue
                if row.label >= 0:
                    self.counters.inc("labels.relabelled")
                else:
                    self.counters.inc("labels.joined")
                row.label = item.label
                self._hold(row, ref, hold)
                continue
            sent = self._recent.get(key)
            if sent is not None:
                if sent.task != lb.task:
                    self.counters.inc("labels.task_mismatch")
                    continue
                if sent.label == item.label:
                    self.counters.inc("labels.duplicate")
                    continue
                sent.label = item.label
                late = Row(sent.device, sent.task, sent.sample, sent.feat, sent.edge_label, sent.edge_conf, sent.mv,
                           sent.ctx, item.label, now, late=True)
                self._hold(late, ref, hold)
                self.counters.inc("labels.joined_late")
                self._to_builder(late, now)
                continue
            if key in self._tomb:
                self.counters.inc("labels.late")
                continue
            old = self._pending.pop(key, None)
            if old is not None:
                self.counters.inc("labels.relabelled")
                if old[3] is not None:
                    self._release(old[3])
            self._pending[key] = (item.label, lb.task, now, ref)
            if ref is not None and hold is not None:
                hold(ref)
            if len(self._pending) > self.cfg.max_pending_labels:
                _, (_, _, _, eref) = self._pending.popitem(last=False)
                self.counters.inc("labels.evicted")
                if eref is not None:
                    self._release(eref)

    @staticmethod
    def _hold(row: Row, ref: Any, hold: Callable[[Any], None] | None) -> None:
        if ref is not None:
            row.refs.append(ref)
            if hold is not None:
                hold(ref)

    # ---- time -------------------------------------------------------------
    def _to_builder(self, row: Row, ready: float) -> None:
        key = (row.task, row.feat.shape[0])
        b = self._builders.get(key)
        if b is None:
            b = self._builders[key] = _Builder()
        if not b.rows:
            b.t_first = ready
        b.rows.append(row)

    def poll(self, now: float, *, flush: bool = False) -> list[Emitted]:
        """Advance time: move rows out of label_wait, age stores, and return the batches due now."""
        cfg = self.cfg
        w = self._waiting
        while w and (flush or w[0].t_in + cfg.label_wait <= now):
            row = w.popleft()
            # Age a batch from when its rows became ready, however late this poll runs.
            self._to_builder(row, min(now, row.t_in + cfg.label_wait))
        self._expire(now)
        out: list[Emitted] = []
        for key, b in self._builders.items():
            while len(b.rows) >= cfg.batch_size:
                chunk, b.rows = b.rows[:cfg.batch_size], b.rows[cfg.batch_size:]
                out.append(self._emit(key[0], chunk, now))
                b.t_first = now
            if b.rows and (flush or b.t_first + cfg.batch_age <= now):
                chunk, b.rows = b.rows, []
                out.append(self._emit(key[0], chunk, now))
        return out

    def _expire(self, now: float) -> None:
        """Count labels whose row never came, and forget sent rows past the window."""
        cfg = self.cfg
        horizon = now - cfg.window
        pend = self._pending
        while pend:
            key, (_, _, t, ref) = next(iter(pend.items()))
            if t > horizon:
                break
            pend.popitem(last=False)
            self.counters.inc("labels.unmatched")
            if ref is not None:
                self._release(ref)
        rec = self._recent
        while rec:
            key, row = next(iter(rec.items()))
            if row.sent > horizon and len(rec) <= cfg.max_recent_rows:
                break
            rec.popitem(last=False)
            self._tomb[key] = None
        while len(self._tomb) > 4 * cfg.max_recent_rows:
            self._tomb.popitem(last=False)

    def next_due(self) -> float | None:
        """Earliest time poll() has something to do (None: nothing pending)."""
        ts = [b.t_first + self.cfg.batch_age for b in self._builders.values() if b.rows]
        if self._waiting:
            ts.append(self._waiting[0].t_in + self.cfg.label_wait)
        return min(ts) if ts else None

    def _emit(self, task: str, rows: list[Row], now: float) -> Emitted:
        self.seq += 1
        devices: dict[str, int] = {}
        idx = np.fromiter((devices.setdefault(r.device, len(devices)) for r in rows), np.int32, len(rows))
        ctx = np.stack([r.ctx for r in rows]) if self.context.names else np.zeros((len(rows), 0), np.float32)
        lc = self.context.late_col
        refs: list[Any] = []
        src: Counter = Counter()
        samples: list[tuple[str, int]] = []
        labelled = 0
        for i, r in enumerate(rows):
            if r.late:
                if lc >= 0:
                    ctx[i, lc] = 1.0
            else:
                key = (r.device, r.sample)
                self._live.pop(key, None)
                r.sent = now
                self._recent[key] = r
                if r.src is not None:
                    src[r.src] += 1
                    samples.append(key)
            if r.label >= 0:
                labelled += 1
            refs.extend(r.refs)
            r.refs = []
        batch = FusedBatch(
            task, self.bridge_id, self.boot, self.seq, tuple(devices), self.context.names,
            np.fromiter((r.sample for r in rows), np.int64, len(rows)), idx,
            np.stack([r.feat for r in rows]).astype(np.float32, copy=False),
            np.fromiter((r.label for r in rows), np.int64, len(rows)),
            np.fromiter((r.edge_label for r in rows), np.int64, len(rows)),
            np.fromiter((r.edge_conf for r in rows), np.float32, len(rows)),
            np.fromiter((r.mv for r in rows), np.int32, len(rows)), ctx.astype(np.float32, copy=False))
        self.counters.inc("rows.out", len(rows))
        self.counters.inc("rows.out_labelled", labelled)
        self.counters.inc("batches.out")
        return Emitted(batch, refs, src, samples)

    def forget(self, samples: Iterable[tuple[str, int]]) -> None:
        """Rows of a batch given up: a copy sent again is a new row, not a duplicate."""
        for key in samples:
            self._recent.pop(key, None)
            self._tomb.pop(key, None)

    # ---- introspection ----------------------------------------------------
    def gauges(self) -> dict[str, float]:
        return {"fusion.waiting_rows": float(len(self._waiting)), "fusion.unsent_rows": float(len(self._live)),
                "fusion.pending_labels": float(len(self._pending)), "fusion.recent_rows": float(len(self._recent))}
