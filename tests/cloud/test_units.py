"""Pure logic: replay buffer, triggers, gate, keys, registry, config, augmentation."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from cloud_worker.config import GateSettings, TriggerSettings, WorkerConfig, raw_capacity
from cloud_worker.learning import policy
from cloud_worker.learning.buffer import Audit, BalancedStore, Pending, Row
from cloud_worker.models import augment
from cloud_worker.registry import Registry
from cloud_worker.releasing.keys import init_keys
from shared.process.config import ConfigError, load_config


def row(key: int, label: int, pseudo: bool = False) -> Row:
    return Row(("d", key), label, 0.3 if pseudo else 1.0, pseudo, np.zeros(2, np.float32), 1)


def test_store_is_class_balanced_and_bounded():
    s = BalancedStore(capacity=6, n_classes=3)  # 2 per class
    for k in range(10):
        s.add(row(k, 0))
    s.add(row(100, 1))

    rows = s.rows()
    assert len(rows) == 3
    assert sorted(r.key[1] for r in rows if r.label == 0) == [8, 9]  # oldest ground truth evicted first
    assert s.evicted == 8


def test_store_evicts_pseudo_before_ground_truth_and_never_overwrites_truth():
    s = BalancedStore(capacity=4, n_classes=2)  # 2 per class
    s.add(row(1, 0))
    s.add(row(2, 0, pseudo=True))

    s.add(row(3, 0))  # full: the pseudo row goes, not the older true one
    refused = s.add(row(1, 1, pseudo=True))  # a guess never replaces a true label
    refused_full = s.add(row(4, 0, pseudo=True))  # a full class of truth makes no room for a guess

    assert sorted(r.key[1] for r in s.rows()) == [1, 3]
    assert not refused and not refused_full
    assert s.get(("d", 1)).label == 0


def test_store_upgrades_pseudo_to_truth_and_moves_class():
    s = BalancedStore(capacity=4, n_classes=2)
    s.add(row(1, 0, pseudo=True))

    assert s.add(row(1, 1))

    r = s.get(("d", 1))
    assert (r.label, r.pseudo, len(s)) == (1, False, 1)
    assert s.counts() == {"rows": 1, "ground_truth": 1, "pseudo": 0}


def test_store_rejects_out_of_range_label():
    with pytest.raises(ValueError):
        BalancedStore(4, 2).add(row(1, 5))


def test_pending_drops_oldest_counted():
    p = Pending(2)
    for k in range(3):
        p.put(("d", k), np.zeros(1), 0, 0.5)
    assert (len(p), p.dropped, p.get(("d", 0))) == (2, 1, None)


def test_audit_accuracy_per_version():
    a = Audit(window=4)
    a.add(1, np.array([True, False, True, True, True]))
    a.add(2, np.array([False]))
    assert a.accuracy(1) == (0.75, 4)  # the last four only
    assert a.accuracy(2) == (0.0, 1)
    assert a.accuracy(3) == (0.0, 0)


def test_audit_expects_what_the_calibrated_confidence_on_the_labelled_rows_says():
    # A person labels the most uncertain samples: half right at confidence 0.5 is no drift; half right
    # at confidence 0.95 is.
    a = Audit()
    a.add(1, np.array([True, False] * 50), np.full(100, 0.5))
    a.add(2, np.array([True, False] * 50), np.full(100, 0.95))
    acc1, n1, exp1 = a.read(1)
    acc2, _, exp2 = a.read(2)
    assert (acc1, n1) == (0.5, 100) and abs(exp1 - 0.5) < 1e-9 and abs(exp2 - 0.95) < 1e-9
    a.add(3, np.array([True]))  # rows without a confidence: nothing to expect from them
    assert a.read(3)[2] is None


T = TriggerSettings(min_new_labels=100, interval_s=60, cooldown_s=5, drift_drop=0.1, drift_min_rows=20)


@pytest.mark.parametrize("kw,expected", [
    ({"new_labels": 100}, "labels"),
    ({"new_labels": 99}, None),
    ({"new_labels": 10, "now": 1070.0}, "time"),
    ({"new_labels": 10, "audited_acc": 0.7, "audited_n": 20}, "drift"),
    ({"new_labels": 10, "audited_acc": 0.7, "audited_n": 19}, None),
    ({"new_labels": 0, "audited_acc": 0.1, "audited_n": 500, "now": 9999.0}, None),  # nothing new to learn from
    ({"new_labels": 1000, "now": 1003.0}, None),  # cooldown
])
def test_retrain_triggers(kw, expected):
    args = {"now": 1010.0, "last_train": 1000.0, "new_labels": 0, "audited_acc": 0.9, "audited_n": 0,
            "deployed_acc": 0.9, **kw}
    assert policy.retrain_due(T, **args) == expected


def test_gate_needs_margin_or_degradation():
    g = GateSettings(margin=0.01)
    assert policy.gate(g, candidate_acc=0.92, deployed_acc=0.9, degraded=False).publish
    assert not policy.gate(g, candidate_acc=0.905, deployed_acc=0.9, degraded=False).publish
    assert policy.gate(g, candidate_acc=0.905, deployed_acc=0.9, degraded=True).publish
    assert not policy.gate(g, candidate_acc=0.89, deployed_acc=0.9, degraded=True).publish


def test_init_keys_private_0600_and_kept_on_rerun(tmp_path):
    kid = init_keys(tmp_path / "k")
    before = (tmp_path / "k" / "signing.key").read_bytes()

    again = init_keys(tmp_path / "k")

    mode = stat.S_IMODE(os.stat(tmp_path / "k" / "signing.key").st_mode)
    assert mode == 0o600
    assert again == kid and (tmp_path / "k" / "signing.key").read_bytes() == before
    assert (tmp_path / "k" / "signing.pub").read_bytes().startswith(b"-----BEGIN PUBLIC KEY")
    assert init_keys(tmp_path / "k", overwrite=True) != kid


def test_registry_claims_are_exclusive(tmp_path):
    r = Registry(tmp_path)
    a, b = r.claim("digits"), r.claim("digits")
    r.release("digits", a)
    c = r.claim("digits")
    assert (a, b, c) == (1, 2, 3)  # a released number below a live claim is not reused out of order


def test_config_forbids_unknown_keys_and_documents_every_field(tmp_path):
    f = tmp_path / "w.toml"
    f.write_text('registry = "/r"\nregsitry_typo = 1\n')
    with pytest.raises(ConfigError, match="regsitry_typo"):
        load_config(WorkerConfig, f, environ={})

    def walk(model):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann)

    walk(WorkerConfig)


def test_config_env_overrides_and_task_check(tmp_path):
    cfg = load_config(WorkerConfig, None, environ={"LEPTON_MQTT__PORT": "1999", "LEPTON_GATE__MARGIN": "0.02"})
    assert (cfg.mqtt.port, cfg.gate.margin) == (1999, 0.02)
    with pytest.raises(ConfigError, match="unknown task"):
        load_config(WorkerConfig, None, environ={"LEPTON_TASKS": '["nope"]'})


def test_the_raw_store_holds_a_whole_window_stream_unless_told_otherwise():
    # 3000 windows (a few MB) held the industrial cloud 2 points below MiniRocket on every labelled row
    default = load_config(WorkerConfig, None, environ={})
    assert raw_capacity(default.buffer, "window") > 12_060  # every row of the longest shipped stream (traffic)
    assert raw_capacity(default.buffer, "image") == 3000
    told = load_config(WorkerConfig, None, environ={"LEPTON_WORKER__BUFFER__RAW_CAPACITY": "500"})
    assert raw_capacity(told.buffer, "window") == raw_capacity(told.buffer, "image") == 500


def test_augment_shifts_by_at_most_one_and_keeps_shape():
    g = torch.Generator().manual_seed(1)
    x = torch.zeros(50, 1, 8, 8)
    x[:, :, 4, 4] = 1.0

    out = augment.jitter(x, g)

    assert out.shape == x.shape
    pos = out[:, 0].flatten(1).argmax(1)
    rows, cols = pos // 8, pos % 8
    assert ((rows - 4).abs() <= 1).all() and ((cols - 4).abs() <= 1).all()
    assert len(set(pos.tolist())) > 1  # it does shift
    assert float(out.sum()) == 50.0
