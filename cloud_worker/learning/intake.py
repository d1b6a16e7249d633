"""What reaches the learner, into its stores: fused rows from the hub and escalations the cloud answered.

- A fused row is learned from once per (device, sample, label) (:class:`LearnedSet`). A labelled row
  audits the edge model that made it, joins the feature store, and, when the worker holds the
  sample itself (it came with an escalation, or with the row: windows), makes that sample ground
  truth in the raw store. An unlabelled row that carries its sample joins the raw store as a
  *pseudo* row: the edge learns the cloud's soft answer for it.
- An answered escalation that carried its sample joins the raw store as a pseudo row (ground truth
  at once when its label came first). Its cloud label waits in ``asked`` for the label; the most
  recent labelled escalations (``escalated``: key, label, what the cloud answered) are the field's
  word on whether the cloud is worth asking (the learner scores the deployed edge on the same samples).

Single-threaded (the learner's thread); ``audit`` is also read by the status thread.
"""

from __future__ import annotations

from collections import OrderedDict, deque

import numpy as np

from cloud_worker.config import BufferSettings
from cloud_worker.learning.buffer import Audit, BalancedStore, Key, Pending, Row
from cloud_worker.learning.learned import LearnedSet
from cloud_worker.learning.rawstore import RawStore
from shared.process.counters import Counters
from shared.protocol.containers import FusedBatch

ASKED_KEYS = 20_000
FIELD_WINDOW = 100  # the most recent labelled escalations that judge whether the cloud is worth asking


class Intake:
    def __init__(self, cfg: BufferSettings, n_classes: int, features: BalancedStore, raw: RawStore,
                 learned: LearnedSet, counters: Counters, field_rows: int) -> None:
        self.cfg = cfg
        self.n_classes = n_classes
        self.features = features
        self.raw = raw
        self.learned = learned
        self.counters = counters
        self.pending = Pending(cfg.pending_hard)  # escalations' cloud answers, waiting for a label
        self.labels_seen: OrderedDict[Key, int] = OrderedDict()  # labels that came before their sample
        self.asked: OrderedDict[Key, tuple[int, int]] = OrderedDict()  # key -> (cloud label, edge version)
        self.escalated: deque[tuple[Key, int, int]] = deque(maxlen=FIELD_WINDOW)  # (key, label, cloud's label)
        self.new_escalated = 0  # labelled escalations since the learner last judged the field
        self.audit = Audit()
        # The most recent labelled field rows (features, label, edge version): under drift, what the
        # gate judges candidates by besides the holdout, which shows only the world of the seed set.
        self.recent: deque[tuple[np.ndarray, int, int]] = deque(maxlen=field_rows)
        self.new_labels = 0  # labelled rows since the last retrain
        self.new_raw_truth = 0  # labelled raw samples since the cloud model was last fitted
        self.dirty = False

    # ---- fused rows --------------------------------------------------------------------
    def fused(self, fb: FusedBatch, feat_dim: int) -> None:
        c = self.counters
        self.dirty = True
        n = len(fb.sample)
        fresh = np.fromiter((self.learned.admit((fb.devices[int(fb.device_idx[i])], int(fb.sample[i])),
                                                int(fb.label[i])) for i in range(n)), bool, n)
        if not fresh.all():
            c.inc("learn.rows.duplicate", int(n - fresh.sum()))
            if not fresh.any():
                return
            fb = _rows(fb, fresh)
        labelled = fb.label >= 0
        for v in np.unique(fb.model_version[labelled]):
            m = labelled & (fb.model_version == v)
            self.audit.add(int(v), fb.edge_label[m] == fb.label[m], fb.edge_conf[m])
        bad = labelled & (fb.label >= self.n_classes)
        if bad.any():
            c.inc("learn.rows_rejected.bad_label", int(bad.sum()))
        feat_ok = fb.feat.shape[1] == feat_dim
        if not feat_ok:
            c.inc("learn.rows_rejected.feat_dim", len(fb.sample))
        for i in range(len(fb.sample)):
            key: Key = (fb.devices[int(fb.device_idx[i])], int(fb.sample[i]))
            label, version = int(fb.label[i]), int(fb.model_version[i])
            sample = fb.raw.item(i) if fb.raw is not None else None
            if 0 <= label < self.n_classes:
                self._labelled(key, label, version, int(fb.edge_label[i]),
                               np.array(fb.feat[i], np.float32) if feat_ok else None, sample)
            elif label < 0:
                self._unlabelled(key, version, int(fb.edge_label[i]),
                                 np.array(fb.feat[i], np.float32) if feat_ok else None, sample)

    def _labelled(self, key: Key, label: int, version: int, edge_label: int, feat: np.ndarray | None,
                  sample: np.ndarray | None) -> None:
        c = self.counters
        asked = self.asked.pop(key, None)
        if asked is not None:
            self.escalated.append((key, label, asked[0]))
            self.new_escalated += 1
        if feat is not None:
            self.features.add(Row(key, label, 1.0, False, feat, version))
            self.recent.append((feat, label, version))
        self.new_labels += 1
        c.inc("learn.rows.labelled")
        self.pending.pop(key)
        if sample is not None:  # the row brought its sample (windows)
            if self.raw.add(Row(key, label, 1.0, False, sample, version), "tensor"):
                self._raw_truth()
            return
        if key in self.raw:  # it came with an escalation: its guess becomes ground truth
            if self.raw.relabel(key, label):
                self._raw_truth()
            return
        self.labels_seen[key] = label  # the escalation may still come (answered after the label)
        while len(self.labels_seen) > self.cfg.pending_hard:
            self.labels_seen.popitem(last=False)

    def _unlabelled(self, key: Key, version: int, edge_label: int, feat: np.ndarray | None,
                    sample: np.ndarray | None) -> None:
        c = self.counters
        if sample is not None and self.raw.add(Row(key, edge_label, self.cfg.pseudo_weight, True, sample, version),
                                               "tensor"):
            c.inc("learn.raw.unlabelled")
        hard = self.pending.get(key)
        if feat is not None and hard is not None and hard[2] >= self.cfg.pseudo_confidence:
            self.features.add(Row(key, int(hard[1]), self.cfg.pseudo_weight, True, feat, version))
            c.inc("learn.rows.pseudo")
        elif sample is None:
            c.inc("learn.rows.unlabelled_unused")

    def _raw_truth(self) -> None:
        self.new_raw_truth += 1
        self.counters.inc("learn.raw.labelled")

    # ---- answered escalations ---------------------------------------------------------------
    def answered(self, keys: list[Key], versions: np.ndarray, labels: np.ndarray, conf: np.ndarray,
                 raw: list[tuple[np.ndarray, str]] | None, edge_x: np.ndarray | None,
                 cloud_x: np.ndarray | None) -> None:
        self.dirty = True
        b = self.cfg
        for i, key in enumerate(keys):
            self.asked[key] = (int(labels[i]), int(versions[i]))
            if len(self.asked) > ASKED_KEYS:
                self.asked.popitem(last=False)
            self.pending.put(key, None, int(labels[i]), float(conf[i]))  # a pseudo-label for its feature row
            if raw is None:
                continue
            item, wire = raw[i]
            inputs = (edge_x[i], cloud_x[i]) if edge_x is not None and cloud_x is not None else None
            truth = self.labels_seen.pop(key, None)
            if truth is not None:
                if self.raw.add(Row(key, truth, 1.0, False, item, int(versions[i])), wire, inputs):
                    self._raw_truth()
            elif self.raw.add(Row(key, int(labels[i]), b.pseudo_weight, True, item, int(versions[i])), wire, inputs):
                self.counters.inc("learn.raw.answered")


def _rows(fb: FusedBatch, keep: np.ndarray) -> FusedBatch:
    """The batch with only the rows in ``keep``."""
    return FusedBatch(fb.task, fb.bridge, fb.boot, fb.seq, fb.devices, fb.context_names, fb.sample[keep],
                      fb.device_idx[keep], fb.feat[keep], fb.label[keep], fb.edge_label[keep], fb.edge_conf[keep],
                      fb.model_version[keep], fb.ctx[keep], None if fb.raw is None else fb.raw.take(keep))
