"""Fusion: feature rows ⋈ labels ⋈ hub context -> FusedBatch per task. Pure logic, clock passed in.

Join key: (device, sample id). A row's life:

1. it arrives (``add_features``) and takes any label that came first (held up to ``window``);
2. it waits ``label_wait`` seconds for a label that is a little behind;
3. it joins its task's batch, sent when ``batch_size`` rows are there or the oldest row
   has waited ``batch_age`` (rows of another feature width or dtype go to their own batch);
4. once sent it is remembered ``window`` seconds: a label arriving then is sent as a
   *label-only row* (the stored features again, ``late_label`` = 1) in a later batch;
5. after that only its key is remembered (tombstone), so a label still later is counted as
   ``labels.late`` instead of being held for a row that will never come.

Every label item ends in exactly one counter: ``labels.joined`` (before its row was sent),
``labels.joined_late`` (label-only row), ``labels.duplicate`` (same label already sent),
``labels.late`` (beyond the window), ``labels.unmatched`` (no row within the window),
``labels.evicted`` (pending store full) or ``labels.task_mismatch``.

Rows travel as *chunks*, never one Python object per row: a chunk is the rows of one feature
message (numpy views into its payload, float16 kept as float16), with one label slot and one
sent-time slot per row. A batch is a list of chunk slices, concatenated once at emission; the
edge model's argmax/max and the context columns are computed there, for the whole batch at
once. Only the join index (device, sample) -> (chunk, row) is kept per row.

Opaque ``refs`` (the bridge's ack tokens) ride along with chunks and labels and come back in
``Emitted.refs`` (to be released once the batch is acknowledged; one entry per hold) or via
``release``. Each chunk remembers the device message it came in (``src``, its (device, boot,
seq)); ``Emitted.src`` counts a batch's rows per message, for custody (hub_bridge/custody.py).
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from hub_bridge.config import FusionSettings
from hub_bridge.context import ContextBuilder
from shared.process.counters import Counters
from shared.protocol.containers import FeatureBatch, FusedBatch
from shared.protocol.rawsample import RawRows
from shared.protocol.schemas import Labels

Key = tuple[str, int]  # (device, sample)


class Chunk:
    """Rows of one feature message (or one label-only row), as arrays. Rows leave in order, so
    ``emitted`` (how many have gone out) says which are sent."""

    __slots__ = ("device", "task", "sample", "samples", "pos", "feat", "scores", "ts", "mv", "dev_ctx", "label",
                 "emitted", "late", "t_in", "src", "ref", "hold", "lrefs", "raw")

    def __init__(self, device: str, task: str, sample: np.ndarray, samples: list[int], feat: np.ndarray,
                 scores: np.ndarray, ts: np.ndarray, mv: int, dev_ctx: np.ndarray | None, t_in: float,
                 late: bool = False, raw: np.ndarray | None = None) -> None:
        self.device = device
        self.task = task
        self.sample = sample
        self.samples = samples  # the same ids as a list
        n = len(samples)
        # Row of a sample id: agents number samples consecutively, so usually an offset.
        self.pos: dict[int, int] | int = samples[0] if n and samples[-1] - samples[0] == n - 1 \
            and samples == list(range(samples[0], samples[0] + n)) else {s: j for j, s in enumerate(samples)}
        self.feat = feat
        self.scores = scores
        self.ts = ts
        self.mv = mv
        self.dev_ctx = dev_ctx
        self.label = np.full(n, -1, np.int64)
        self.emitted = 0
        self.late = late
        self.t_in = t_in
        self.src: Any = None
        self.ref: Any = None
        self.hold: Callable[[Any], None] | None = None
        self.lrefs: dict[int, list[Any]] | None = None  # row -> refs of the labels it carries
        self.raw = raw  # (n, ...) the samples themselves, when the feature message carried them

    def row(self, sample: int) -> int:
        p = self.pos
        return sample - p if isinstance(p, int) else p[sample]

    def __len__(self) -> int:
        return len(self.samples)


@dataclass(frozen=True, slots=True)
class Emitted:
    batch: FusedBatch
    refs: list[Any]
    src: Counter  # device message (device, boot, seq) -> its rows in this batch (label-only rows excluded)
    samples: list[tuple[Chunk, int, int]]  # the batch's rows (label-only rows excluded) as chunk slices, for forget


class _Builder:
    __slots__ = ("segs", "n", "t_first")

    def __init__(self) -> None:
        self.segs: deque[list] = deque()  # [chunk, first row, end row]
        self.n = 0
        self.t_first = 0.0

    def take(self, k: int) -> list[tuple[Chunk, int, int]]:
        out = []
        while k > 0 and self.segs:
            seg = self.segs[0]
            c, a, b = seg
            if b - a <= k:
                self.segs.popleft()
                out.append((c, a, b))
                k -= b - a
                self.n -= b - a
            else:
                out.append((c, a, a + k))
                seg[1] = a + k
                self.n -= k
                k = 0
        return out


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
        self._rows: dict[str, dict[int, Chunk]] = {}  # device -> sample -> chunk; arrived, not yet forgotten
        self._waiting: deque[Chunk] = deque()  # chunks still inside label_wait, by arrival
        self._waiting_rows = 0
        self._unsent_rows = 0
        self._pending: OrderedDict[Key, tuple[int, str, float, Any]] = OrderedDict()
        self._recent: deque[tuple[float, Chunk, int, int]] = deque()  # sent slices, oldest first
        self._recent_rows = 0
        # Tombstones: device -> sample ids sent and forgotten, plus their order of burial for the bound.
        self._tomb: dict[str, set[int]] = {}
        self._buried: deque[tuple[str, list[int]]] = deque()
        self._tomb_rows = 0
        self._builders: dict[tuple, _Builder] = {}

    # ---- inputs -----------------------------------------------------------
    def add_features(self, fb: FeatureBatch, now: float, ref: Any = None, hold: Callable[[Any], None] | None = None,
                     src: Any = None) -> int:
        """Take the rows of one FeatureBatch; returns how many rows were new."""
        n = fb.sample.shape[0]
        if n == 0:
            return 0
        dev, task = fb.device, fb.task
        pending = self._pending
        d = self._rows.get(dev)
        if d is None:
            d = self._rows[dev] = {}
        samples = fb.sample.tolist()
        sample, feat, scores, ts = fb.sample, fb.feat, fb.scores, fb.ts
        raw = fb.raw.data if fb.raw is not None else None
        if not d.keys().isdisjoint(samples) or len(set(samples)) != n:  # copies: rare, row by row
            seen: set[int] = set()
            keep = []
            for i, s in enumerate(samples):
                if s in d or s in seen:
                    self.counters.inc("rows.duplicate")
                    continue
                seen.add(s)
                keep.append(i)
            if not keep:
                return 0
            sample, feat, scores, ts = sample[keep], feat[keep], scores[keep], ts[keep]
            raw = raw[keep] if raw is not None else None
            samples = [samples[i] for i in keep]
        c = Chunk(dev, task, sample, samples, feat, scores, ts, fb.model_version,
                  self.context.device_values(dev, now), now, raw=raw)
        c.src = src
        if ref is not None:
            c.ref, c.hold = ref, hold
            if hold is not None:
                hold(ref)
        d.update(dict.fromkeys(samples, c))
        if pending:
            for j, s in enumerate(samples):
                p = pending.pop((dev, s), None)
                if p is not None:
                    self._join_pending(c, j, p, task)
        new = len(samples)
        self.counters.inc("rows.in", new)
        self._unsent_rows += new
        if self.cfg.label_wait > 0:
            self._waiting.append(c)
            self._waiting_rows += new
            while self._waiting_rows > self.cfg.max_waiting_rows and len(self._waiting) > 1:
                old = self._waiting.popleft()
                self._waiting_rows -= len(old)
                self.counters.inc("rows.batched_early", len(old))
                self._to_builder(old, now)
        else:
            self._to_builder(c, now)
        return new

    def _join_pending(self, c: Chunk, j: int, p: tuple[int, str, float, Any], task: str) -> None:
        label, ltask, _, lref = p
        if ltask == task:
            c.label[j] = label
            self.counters.inc("labels.joined")
            self.counters.inc("labels.joined_before")
        else:
            self.counters.inc("labels.task_mismatch")
        if lref is not None:
            self._carry(c, j, lref)

    @staticmethod
    def _carry(c: Chunk, j: int, ref: Any) -> None:
        """Row j carries a label message's (already held) reference until its batch is acknowledged."""
        if c.lrefs is None:
            c.lrefs = {}
        c.lrefs.setdefault(j, []).append(ref)

    def add_labels(self, lb: Labels, now: float, ref: Any = None, hold: Callable[[Any], None] | None = None) -> None:
        self._expire(now)
        d = self._rows.get(lb.device) or {}
        for item in lb.items:
            key = (lb.device, item.sample)
            c = d.get(item.sample)
            if c is not None:
                j = c.row(item.sample)
                if c.task != lb.task:
                    self.counters.inc("labels.task_mismatch")
                    continue
                if c.label[j] == item.label:
                    self.counters.inc("labels.duplicate")
                    continue
                if j >= c.emitted:
                    self.counters.inc("labels.relabelled" if c.label[j] >= 0 else "labels.joined")
                    c.label[j] = item.label
                    if ref is not None:
                        if hold is not None:
                            hold(ref)
                        self._carry(c, j, ref)
                    continue
                c.label[j] = item.label
                late = Chunk(c.device, c.task, c.sample[j:j + 1], [item.sample], c.feat[j:j + 1],
                             c.scores[j:j + 1], c.ts[j:j + 1], c.mv, c.dev_ctx, now, late=True,
                             raw=c.raw[j:j + 1] if c.raw is not None else None)
                late.label[0] = item.label
                if ref is not None:
                    late.ref, late.hold = ref, hold
                    if hold is not None:
                        hold(ref)
                self.counters.inc("labels.joined_late")
                self._to_builder(late, now)
                continue
            if item.sample in self._tomb.get(lb.device, ()):
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

    def supersede(self, lb: Labels, now: float) -> int:
        """A correction (``lb.supersedes``): the new label (or -1, none) replaces the old one wherever
        fusion still holds it: a row not yet sent, a label waiting for its row. Rows already sent are
        the workers' to correct (the bridge forwards the message to hub/relabel/{task}); their label
        here is updated too, so a later copy of the new label is a duplicate. Returns the items applied."""
        self._expire(now)
        d = self._rows.get(lb.device) or {}
        applied = 0
        for item in lb.items:
            c = d.get(item.sample)
            if c is not None:
                if c.task != lb.task:
                    self.counters.inc("labels.task_mismatch")
                    continue
                c.label[c.row(item.sample)] = item.label
                applied += 1
                continue
            old = self._pending.pop((lb.device, item.sample), None)
            if old is not None and old[3] is not None:
                self._release(old[3])
            if item.label >= 0 and item.sample not in self._tomb.get(lb.device, ()):
                self._pending[(lb.device, item.sample)] = (item.label, lb.task, now, None)
            applied += 1
        self.counters.inc("labels.superseded", applied)
        return applied

    # ---- time -------------------------------------------------------------
    def _to_builder(self, c: Chunk, ready: float) -> None:
        # Rows batch together when they stack: the same feature width and dtype, and raw samples of one
        # shape and dtype, or none.
        raw_kind = None if c.raw is None else (c.raw.shape[1:], c.raw.dtype.char)
        key = (c.task, c.feat.shape[1], c.feat.dtype.char, raw_kind)
        b = self._builders.get(key)
        if b is None:
            b = self._builders[key] = _Builder()
        if not b.n:
            b.t_first = ready
        b.segs.append([c, 0, len(c)])
        b.n += len(c)

    def poll(self, now: float, *, flush: bool = False) -> list[Emitted]:
        """Advance time: move rows out of label_wait, age stores, and return the batches due now."""
        cfg = self.cfg
        w = self._waiting
        while w and (flush or w[0].t_in + cfg.label_wait <= now):
            c = w.popleft()
            self._waiting_rows -= len(c)
            # Age a batch from when its rows became ready, however late this poll runs.
            self._to_builder(c, min(now, c.t_in + cfg.label_wait))
        self._expire(now)
        out: list[Emitted] = []
        for key, b in self._builders.items():
            while b.n >= cfg.batch_size:
                out.append(self._emit(key[0], b.take(cfg.batch_size), now))
                b.t_first = now
            if b.n and (flush or b.t_first + cfg.batch_age <= now):
                out.append(self._emit(key[0], b.take(b.n), now))
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
        rec, tomb = self._recent, self._tomb
        bound = 4 * cfg.max_recent_rows
        while rec and (rec[0][0] <= horizon or self._recent_rows > cfg.max_recent_rows):
            _, c, a, b = rec.popleft()
            self._recent_rows -= b - a
            dev = c.device
            d = self._rows.get(dev)
            if d is None:
                continue
            ids = c.samples[a:b] if b - a < len(c.samples) else c.samples
            gone = [s for s in ids if d.get(s) is c]  # others: resends processed since (batch given up)
            for s in gone:
                del d[s]
            if not d:
                del self._rows[dev]
            if gone:
                t = tomb.get(dev)
                if t is None:
                    t = tomb[dev] = set()
                t.update(gone)
                self._buried.append((dev, gone))
                self._tomb_rows += len(gone)
        while self._tomb_rows > bound:
            dev, ids = self._buried.popleft()
            self._tomb_rows -= len(ids)
            t = tomb.get(dev)
            if t is not None:
                t.difference_update(ids)
                if not t:
                    del tomb[dev]

    def next_due(self) -> float | None:
        """Earliest time poll() has something to do (None: nothing pending)."""
        ts = [b.t_first + self.cfg.batch_age for b in self._builders.values() if b.n]
        if self._waiting:
            ts.append(self._waiting[0].t_in + self.cfg.label_wait)
        return min(ts) if ts else None

    def _emit(self, task: str, segs: list[tuple[Chunk, int, int]], now: float) -> Emitted:
        self.seq += 1
        devices: dict[str, int] = {}
        counts, dev_idx, mvs, lates = [], [], [], []
        refs: list[Any] = []
        src: Counter = Counter()
        samples: list[tuple[str, np.ndarray]] = []
        labelled = 0
        for seg in segs:
            c, a, b = seg
            k = b - a
            counts.append(k)
            dev_idx.append(devices.setdefault(c.device, len(devices)))
            mvs.append(c.mv)
            lates.append(c.late)
            c.emitted = b
            if c.ref is not None:
                if b < len(c) and c.hold is not None:
                    c.hold(c.ref)  # the rest of the chunk keeps its own hold
                refs.append(c.ref)
            if c.lrefs:
                for j in [j for j in c.lrefs if a <= j < b]:
                    refs.extend(c.lrefs.pop(j))
            if not c.late:
                self._recent.append((now, c, a, b))
                samples.append(seg)
                if c.src is not None:
                    src[c.src] += k
        n = sum(counts)
        rec = n - sum(k for k, late in zip(counts, lates, strict=True) if late)
        self._recent_rows += rec
        self._unsent_rows -= rec
        whole = [a == 0 and b == len(c) for c, a, b in segs]

        def cat(attr: str) -> np.ndarray:
            parts = [getattr(c, attr) if w else getattr(c, attr)[a:b] for (c, a, b), w in zip(segs, whole, strict=True)]
            return parts[0] if len(parts) == 1 else np.concatenate(parts)

        sample, feat, ts = cat("sample"), cat("feat"), cat("ts")  # read-only views of payloads: no copy needed
        raw = cat("raw") if segs[0][0].raw is not None else None  # one builder: all rows carry it, or none
        label = np.concatenate([c.label[a:b] for c, a, b in segs])  # a copy: a chunk's labels change later
        labelled = int(np.count_nonzero(label >= 0))
        if len({c.scores.shape[1] for c, _, _ in segs}) == 1:
            scores = cat("scores")
            edge_label, edge_conf = scores.argmax(axis=1), scores.max(axis=1)
        else:  # two model versions with different class counts in one batch
            edge_label = np.concatenate([c.scores[a:b].argmax(axis=1) for c, a, b in segs])
            edge_conf = np.concatenate([c.scores[a:b].max(axis=1).astype(np.float32) for c, a, b in segs])
        counts_a = np.asarray(counts)
        dev_ctx = None
        if self.context.has_device_columns:
            dev_ctx = np.repeat(np.stack([c.dev_ctx for c, _, _ in segs]), counts_a, axis=0)
        late = np.repeat(np.asarray(lates), counts_a) if any(lates) else None
        batch = FusedBatch(
            task, self.bridge_id, self.boot, self.seq, tuple(devices), self.context.names, sample,
            np.repeat(np.asarray(dev_idx, np.int32), counts_a), feat, label,
            edge_label.astype(np.int64, copy=False), edge_conf.astype(np.float32, copy=False),
            np.repeat(np.asarray(mvs, np.int32), counts_a), self.context.build(ts, dev_ctx, late),
            None if raw is None else RawRows.tensor(raw))
        self.counters.inc("rows.out", n)
        self.counters.inc("rows.out_labelled", labelled)
        self.counters.inc("batches.out")
        return Emitted(batch, refs, src, samples)

    def forget(self, samples: Iterable[tuple[Chunk, int, int]]) -> None:
        """Rows of a batch given up (``Emitted.samples``): a copy sent again is a new row, not a duplicate."""
        for c, a, b in samples:
            d = self._rows.get(c.device)
            for s in c.samples[a:b]:
                if d is not None and d.get(s) is c:
                    del d[s]
                self._tomb.get(c.device, set()).discard(s)

    # ---- introspection ----------------------------------------------------
    def gauges(self) -> dict[str, float]:
        return {"fusion.waiting_rows": float(self._waiting_rows), "fusion.unsent_rows": float(self._unsent_rows),
                "fusion.pending_labels": float(len(self._pending)), "fusion.recent_rows": float(self._recent_rows)}
