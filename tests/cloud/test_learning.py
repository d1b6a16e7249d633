"""Continual learning without a broker: fused batches in, gated versions out (registry only)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloud_worker.learning.learner import Learner
from cloud_worker.registry import Registry
from cloud_worker.service import load_signer
from lepton_tasks import load_task
from shared.protocol.schemas import Manifest
from shared.protocol.topics import Topics

from .conftest import make_config
from .helpers import answered, fused_batch


def learner(tmp_path, keydir, registry_copy, **over) -> tuple[Learner, list]:
    registry_copy()
    cfg = make_config(tmp_path, keydir, **over)
    published: list = []
    lr = Learner(load_task("digits"), cfg, Registry(cfg.registry), load_signer(cfg), Topics(cfg.root),
                 device=torch.device("cpu"), publish=published.append)
    assert lr.load()
    return lr, published


def gate_held(d: dict, margin: float) -> bool:
    """The gate's mechanism, whatever the figures: published exactly when the candidate beat the deployed
    model's holdout accuracy by the margin (no drift in these tests)."""
    return d["published"] == (d["candidate_acc"] >= d["deployed_acc"] + margin)


def test_labelled_stream_batches_raise_holdout_accuracy_across_versions(tmp_path, keydir, registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy)
    stream = load_task("digits").dataset().stream
    v1_acc = lr.deployed_acc
    decisions = []

    # A few labels, then 34 times as many: each round gained 12 to 28 holdout samples under every CPU
    # kernel tried, where the gate's margin (0.005 of 360) needs two, so no CPU's rounding decides whether
    # v3 exists. Rounds of 150 then 550 left v3 to 1 to 11 samples: refused on an AMD EPYC (tests/README.md).
    for round_, chunk in enumerate((stream[:20], stream[20:700])):
        lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, lr.version, chunk, seq=round_))
        d = lr.retrain("labels")
        assert gate_held(d, lr.cfg.gate.margin) and d["published"], d["why"]
        decisions.append(d)

    first, second = decisions
    assert [e.version for e in published] == [2, 3]
    assert (first["deployed_acc"], second["deployed_acc"]) == (v1_acc, first["candidate_acc"])  # each built on the last
    assert second["candidate_acc"] - v1_acc >= 0.03, decisions  # a visible gain over the 120-sample seed model
    rec = lr.registry.get("digits", 3).record
    assert rec["parent"] == 2 and rec["backbone"] == 1 and rec["kind"] == "head"
    assert rec["data"]["features"] > 0 and rec["metrics"]["accuracy"] == second["candidate_acc"]
    m = Manifest.model_validate_json(rec["manifest_raw"])
    assert (m.version, m.parent, m.metrics["accuracy"]) == (3, 2, second["candidate_acc"])


def test_worse_candidate_is_not_published_and_the_decision_is_logged(tmp_path, keydir, registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy)
    stream = load_task("digits").dataset().stream
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream[:400]))

    d = lr.retrain("labels", label_noise=True)

    assert not d["published"] and d["candidate_acc"] < d["deployed_acc"]
    assert published == [] and lr.registry.versions("digits") == [1] and lr.version == 1
    last = lr.registry.decisions("digits")[-1]
    assert last["published"] is False and last["label_noise"] is True and "does not beat" in last["why"]


def test_features_from_another_backbone_are_not_mixed_in(tmp_path, keydir, registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy)
    stream = load_task("digits").dataset().stream
    fb = fused_batch("digits", lr.deployed.onnx, 1, stream[:200])
    lr.backbones[7] = 7  # as if rows came from a version with its own backbone
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 7, stream[200:300]))
    lr.ingest_fused(fb)

    d = lr.retrain("labels")

    assert d["data"]["features"] == 200 and d["data"]["features_other_backbone"] == 100


def test_hard_samples_with_labels_train_the_whole_model(tmp_path, keydir, registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy, training={"whole_min_raw": 150})
    stream = load_task("digits").dataset().stream[:250]
    answered(lr, "digits", stream)  # escalations with their samples, answered by the cloud
    held = lr.raw.counts()

    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream))  # the labels arrive via the bridge
    d = lr.retrain("labels")

    assert held == {"rows": 250, "ground_truth": 0, "pseudo": 250}  # the cloud's answers, until labels come
    assert lr.raw.counts() == {"rows": 250, "ground_truth": 250, "pseudo": 0} and len(lr.intake.pending) == 0
    assert d["candidate"] == "whole" and d["data"]["raw"] == 250 and d["data"]["distilled"] == 370
    assert d["published"], d["why"]
    rec = lr.registry.get("digits", 2).record
    assert rec["backbone"] == 2 and rec["kind"] == "whole"  # a new backbone: old features no longer match
    assert 0.05 < rec["metrics"]["temperature"] < 20 and "ece" in rec["metrics"]  # calibrated on the holdout


def test_unlabelled_raw_samples_are_learned_from_the_clouds_answers(tmp_path, keydir, registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy, buffer={"pseudo_confidence": 0.5, "pseudo_weight": 0.25},
                    training={"whole_min_raw": 40})
    stream = load_task("digits").dataset().stream[:50]
    answered(lr, "digits", stream, labels=np.zeros(50, np.int64), conf=np.r_[np.full(30, 0.9), np.full(20, 0.1)])
    unlabelled = fused_batch("digits", lr.deployed.onnx, 1, stream, labels=np.full(50, -1))

    lr.ingest_fused(unlabelled)

    # Every raw sample is kept for distillation (the edge learns the cloud's soft answer, at a lower
    # weight); only confident answers pseudo-label the feature rows.
    assert lr.raw.counts() == {"rows": 50, "ground_truth": 0, "pseudo": 50}
    assert {r.weight for r in lr.raw.all()} == {0.25}
    assert lr.features.counts()["pseudo"] == 30 and {r.weight for r in lr.features.rows()} == {0.25}
    assert lr.counters.get("learn.rows.unlabelled_unused") == 20
    assert lr.intake.new_labels == 0  # guesses do not trigger retraining
    d = lr.retrain("manual")
    assert d["candidate"] == "whole" and d["data"] == {"seed": 120, "raw": 0, "pseudo": 50, "features": 0,
                                                       "distilled": 170}


def test_promote_makes_a_new_version_with_the_old_weights(tmp_path, keydir, registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy)
    stream = load_task("digits").dataset().stream
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream[:400]))
    assert lr.retrain("labels")["published"]

    e = lr.republish_as_new(1, "rollback")

    v1 = lr.registry.get("digits", 1)
    m = Manifest.model_validate_json(e.manifest_raw)
    assert e.version == 3 and lr.version == 3 and published[-1].version == 3
    assert e.onnx == v1.onnx and m.sha256 == v1.record["sha256"] and m.parent == 1
    assert m.artifact.endswith("/model/digits/artifact/3")
    assert abs(lr.deployed_acc - v1.record["metrics"]["accuracy"]) < 1e-9
    assert lr.registry.decisions("digits")[-1]["event"] == "rollback"


def test_audited_edge_accuracy_drop_fires_drift_and_lets_an_equal_candidate_through(tmp_path, keydir,
                                                                                    registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy, gate={"margin": 0.5},
                            triggers={"min_new_labels": 10_000, "drift_min_rows": 50, "cooldown_s": 0})
    stream = load_task("digits").dataset().stream[:80]
    fb = fused_batch("digits", lr.deployed.onnx, 1, stream)
    wrong = fb.label.copy()
    fb = type(fb)(**{**{f: getattr(fb, f) for f in fb.__dataclass_fields__}, "edge_label": (wrong + 1) % 10})

    lr.ingest_fused(fb)  # the field says: the edge model is wrong on every labelled row

    assert lr.intake.audit.accuracy(1) == (0.0, 80)
    assert lr.due() == "drift" and lr.degraded()
    d = lr.retrain("drift")
    assert d["degraded"] and d["published"] and "degraded" in d["why"], d["why"]
    assert [e.version for e in published] == [2]


def test_rows_with_features_of_another_width_are_counted_not_stored(tmp_path, keydir, registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy)
    fb = fused_batch("digits", lr.deployed.onnx, 1, load_task("digits").dataset().stream[:5])
    fb = type(fb)(**{**{f: getattr(fb, f) for f in fb.__dataclass_fields__}, "feat": np.zeros((5, 7), np.float32)})

    lr.ingest_fused(fb)

    assert lr.counters.get("learn.rows_rejected.feat_dim") == 5 and len(lr.features) == 0


def test_replay_buffer_survives_a_restart(tmp_path, keydir, registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy)
    stream = load_task("digits").dataset().stream[:40]
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream))
    answered(lr, "digits", stream[:10], labels=np.zeros(10, np.int64), conf=np.full(10, 0.99))
    answered(lr, "digits", stream[10:12], device="cam-2")  # no label: still the cloud's guess
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream[:10]))  # copies: learned once already

    lr.save_buffer()
    again, _ = learner(tmp_path, keydir, registry_copy)

    assert again.features.counts() == lr.features.counts() == {"rows": 40, "ground_truth": 40, "pseudo": 0}
    assert lr.raw.counts() == {"rows": 12, "ground_truth": 10, "pseudo": 2}  # labels came before the samples
    assert again.raw.counts() == lr.raw.counts()
    a = {r.key: (r.label, r.version) for r in again.features.rows()}
    assert a == {r.key: (r.label, r.version) for r in lr.features.rows()}
    k = ("cam-1", int(stream[3]))
    assert np.array_equal(again.raw.get(k).data, lr.raw.get(k).data)
    np.testing.assert_array_equal(again.raw.cloud_inputs([again.raw.get(k)]), lr.raw.cloud_inputs([lr.raw.get(k)]))
    assert again.learned.admit(("cam-1", int(stream[0])), int(load_task("digits").dataset().y[stream[0]])) is False


@pytest.mark.parametrize("damage", [b"not an npz", b"PK\x03\x04truncated zip"])
def test_damaged_buffer_file_is_ignored(tmp_path, keydir, registry_copy, damage):
    reg = registry_copy()
    (reg / "digits" / "buffer.npz").write_bytes(damage)

    lr, _ = learner(tmp_path, keydir, registry_copy)

    assert len(lr.features) == 0 and lr.version == 1


def test_enough_labelled_raw_rows_refresh_the_cloud_model_and_only_keep_it_if_not_worse(tmp_path, keydir,
                                                                                        registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy, training={"cloud_refresh_rows": 60})
    stream = load_task("digits").dataset().stream[:80]
    before = lr.cloud
    answered(lr, "digits", stream)
    lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream))

    d = lr.retrain("labels")

    c = d["cloud"]
    assert c["trained"] and c["rows"] == 200 and c["labelled_raw"] == 80 and c["previous_acc"] == before.accuracy
    assert c["kept"] == (c["candidate_acc"] >= before.accuracy - lr.cfg.training.cloud_max_holdout_loss)
    assert (lr.cloud is not before) == c["kept"]
    assert lr.registry.load_cloud("digits")[1]["accuracy"] == lr.cloud.accuracy
    assert lr.intake.new_raw_truth == 0  # counted again from the snapshot it was trained on
    assert lr.registry.decisions("digits")[-1]["cloud"] == c
    assert lr.retrain("labels")["cloud"] == {"started": False, "new_labelled_raw": 0}
