"""Corrections (supersession): a person's new word on a sample replaces the old label everywhere.

The bridge forwards a ``Labels`` message with ``supersedes`` to ``hub/relabel/{task}``, which every
worker receives. :func:`apply` makes the new label (or none, for -1) the sample's label in the
learner's feature and raw stores, its recent field rows (what the gate's field check judges by), its
learned-once ledger and its early-label map; :func:`drop_superseded` then keeps copies of the old
label that arrive later in fused batches (a republished batch, a redelivery) from bringing it back.
:class:`Corrections` is the bounded memory of what was corrected (oldest forgotten first); it is not
saved across restarts. Kept apart from the learner so the learning code carries one hook for each.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import numpy as np

from cloud_worker.learning.buffer import BalancedStore, Key, Row
from cloud_worker.learning.intake import Intake, _rows
from cloud_worker.learning.learned import LearnedSet
from cloud_worker.learning.rawstore import RawStore
from shared.process.counters import Counters
from shared.protocol.containers import FusedBatch


class Corrections:
    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._d: OrderedDict[Key, int] = OrderedDict()

    def note(self, key: Key, label: int) -> None:
        self._d[key] = label
        self._d.move_to_end(key)
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def get(self, key: Key) -> int | None:
        return self._d.get(key)

    def __len__(self) -> int:
        return len(self._d)


class Stores(Protocol):
    """What a correction touches: the learner's stores, its ledger and its memory of corrections."""

    corrections: Corrections
    counters: Counters
    intake: Intake
    learned: LearnedSet
    features: BalancedStore
    raw: RawStore


def drop_superseded(lr: Stores, fb: FusedBatch) -> FusedBatch | None:
    """``fb`` without labelled rows whose label a correction replaced (None: nothing left)."""
    corr = lr.corrections
    if not len(corr):
        return fb
    keep = np.ones(len(fb.sample), bool)
    for i in np.flatnonzero(fb.label >= 0):
        want = corr.get((fb.devices[int(fb.device_idx[i])], int(fb.sample[i])))
        if want is not None and want != int(fb.label[i]):
            keep[i] = False
    if keep.all():
        return fb
    lr.counters.inc("learn.rows.superseded", int((~keep).sum()))
    if not keep.any():
        return None
    return _rows(fb, keep)


def apply(lr: Stores, key: Key, label: int) -> None:
    """Make ``label`` (-1: none) the label of ``key`` wherever the learner holds one."""
    c = lr.counters
    ik = lr.intake
    lr.corrections.note(key, label)
    lr.learned.replace(key, label)
    ik.dirty = True
    row = lr.features.get(key)
    if row is not None and not (row.label == label and not row.pseudo):
        lr.features.remove(key)
        if label >= 0:
            lr.features.add(Row(key, label, 1.0, False, row.data, row.version))
        _fix_recent(lr, row.data, label)
    if key in lr.raw:  # the sample itself: its new label, or out of the store when retracted
        if label >= 0:
            lr.raw.relabel(key, label)
        else:
            lr.raw.remove(key)
    if key in ik.labels_seen:
        if label >= 0:
            ik.labels_seen[key] = label
        else:
            del ik.labels_seen[key]
    if label >= 0:
        ik.new_labels += 1
    c.inc("learn.relabel.retracted" if label < 0 else "learn.relabel.applied")


def _fix_recent(lr: Stores, data: np.ndarray, label: int) -> None:
    """The recent field rows share their feature array with the store's row: find them by identity."""
    recent = lr.intake.recent
    rows = list(recent)
    fixed = [(f, label, v) if f is data else (f, y, v) for f, y, v in rows if f is not data or label >= 0]
    if len(fixed) != len(rows) or any(a[1] != b[1] for a, b in zip(fixed, rows, strict=False)):
        recent.clear()
        recent.extend(fixed)
