"""Supersession at the worker: a correction replaces the old label in every store, the recent field
rows and the learned-once ledger, and later copies of the old label are not learned."""

from __future__ import annotations

import numpy as np

from cloud_worker.learning import relabel
from lepton_tasks import load_task

from .helpers import fused_batch
from .test_learning import learner


def test_a_correction_replaces_the_old_label_and_copies_of_it_are_skipped(tmp_path, keydir, registry_copy):
    # Prepare: ten labelled rows learned from the stream
    lr, _ = learner(tmp_path, keydir, registry_copy)
    idx = load_task("digits").dataset().stream[:10]
    fb = fused_batch("digits", lr.deployed.onnx, lr.version, idx, seq=1)
    lr.ingest_fused(fb)
    key = ("cam-1", int(fb.sample[0]))
    gone = ("cam-1", int(fb.sample[1]))
    old, new = int(fb.label[0]), (int(fb.label[0]) + 1) % lr.n_classes
    assert lr.features.get(key).label == old and len(lr.intake.recent) == 10

    # Execute: correct one, retract another, then a copy of the old batch arrives (a bridge republish)
    relabel.apply(lr, key, new)
    relabel.apply(lr, gone, -1)
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, lr.version, idx, seq=2))

    # Assert
    assert lr.features.get(key).label == new and not lr.features.get(key).pseudo
    assert lr.features.get(gone) is None
    recent_labels = [y for f, y, v in lr.intake.recent]
    assert len(recent_labels) == 9 and recent_labels.count(new) >= 1
    assert lr.corrections.get(key) == new and lr.learned.admit(key, new) is False  # the ledger holds the new one
    assert lr.counters.get("learn.rows.superseded") == 2  # the copy's old labels of both samples
    assert lr.counters.get("learn.rows.duplicate") == 8  # the other rows were learned once
    assert lr.counters.get("learn.relabel.applied") == 1 and lr.counters.get("learn.relabel.retracted") == 1


def test_a_correction_before_its_row_arrives_wins(tmp_path, keydir, registry_copy):
    # Prepare
    lr, _ = learner(tmp_path, keydir, registry_copy)
    idx = load_task("digits").dataset().stream[:3]
    fb = fused_batch("digits", lr.deployed.onnx, lr.version, idx, seq=1)
    key = ("cam-1", int(fb.sample[0]))
    new = (int(fb.label[0]) + 1) % lr.n_classes

    # Execute: the correction overtakes the batch carrying the old label
    relabel.apply(lr, key, new)
    lr.ingest_fused(fb)

    # Assert: the old label never entered; the other rows did
    assert lr.features.get(key) is None
    assert all(lr.features.get(("cam-1", int(s))) is not None for s in fb.sample[1:])
    assert np.count_nonzero(fb.label >= 0) == 3 and lr.counters.get("learn.rows.superseded") == 1
