"""What the edge-cloud split is worth on the holdout, and when the cloud must defer to the edge."""

from __future__ import annotations

import numpy as np

from cloud_worker.learning.scoring import Policy, escalated, macro_f1, split_worth


def _onehot(labels, conf, n=3):
    p = np.full((len(labels), n), (1 - conf) / (n - 1))
    p[np.arange(len(labels)), labels] = conf
    return p


def test_macro_f1_weighs_every_class_the_same():
    y = np.array([0] * 98 + [1, 1])
    always_0 = np.zeros(100, int)
    assert macro_f1(y, always_0, 2) < 0.5 < (always_0 == y).mean()  # 98% accurate, useless on the rare class
    assert macro_f1(y, y, 2) == 1.0


def test_joint_takes_the_cloud_where_the_edge_is_unsure_and_the_cloud_is_better():
    y = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])
    edge = _onehot(y, 0.95)
    edge[:3] = _onehot([1, 2, 0], 0.5)  # wrong and unsure on the first three
    cloud = _onehot(y, 0.9)  # right everywhere
    w = split_worth(edge, cloud, y, Policy("max_prob", 0.8))
    assert w["escalated"] == 0.3 and w["edge_acc"] == 0.7 and w["cloud_acc"] == 1.0 and w["joint_acc"] == 1.0
    assert w["escalated_edge_acc"] == 0.0 and w["escalated_cloud_acc"] == 1.0 and w["defer"] == 0.0


def test_a_weaker_cloud_is_told_to_defer_so_joint_never_falls_below_edge():
    y = np.array([0, 1, 2, 0, 1, 2])
    edge = _onehot(y, 0.6)  # right but unsure: every sample escalates
    cloud = _onehot((y + 1) % 3, 0.99)  # confidently wrong
    w = split_worth(edge, cloud, y, Policy("max_prob", 0.8))
    assert w["defer"] == 1.0 and w["joint_acc"] == w["edge_acc"] == 1.0 and w["cloud_acc"] == 0.0


def test_a_budget_caps_the_share_escalated():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet([1, 1, 1], size=1000)  # most are "uncertain" at 0.8
    assert escalated(probs, Policy("max_prob", 0.8)).mean() > 0.5
    capped = escalated(probs, Policy("max_prob", 0.8, budget=0.15))
    assert 0.13 <= capped.mean() <= 0.16


def test_the_field_overrules_the_holdout_on_whether_to_defer(tmp_path, keydir, registry_copy):
    import numpy as np
    import torch

    from cloud_worker.learning.learner import FIELD_DEFER_MIN, Learner
    from cloud_worker.registry import Registry
    from cloud_worker.service import load_signer
    from lepton_tasks import load_task
    from shared.protocol.topics import Topics

    from .conftest import make_config
    from .helpers import answered, fused_batch

    registry_copy()
    cfg = make_config(tmp_path, keydir)
    lr = Learner(load_task("digits"), cfg, Registry(cfg.registry), load_signer(cfg), Topics(cfg.root),
                 device=torch.device("cpu"))
    assert lr.load()
    assert not lr.defer  # the holdout: the cloud is ahead where agents escalate
    stream = load_task("digits").dataset().stream[:FIELD_DEFER_MIN]
    fb = fused_batch("digits", lr.deployed.onnx, 1, stream)
    # The cloud answered every one of these escalations wrongly (a nightfall it has not seen yet)
    answered(lr, "digits", stream, labels=(fb.label + 1) % 10, conf=np.full(len(stream), 0.9))
    lr.ingest_fused(fb)  # their labels
    edge_acc, cloud_acc, n = lr.field
    assert n == FIELD_DEFER_MIN and cloud_acc == 0.0 and edge_acc > 0.5 and lr.defer
    # Like with like: the deployed edge is what the field judges; a new one is scored on the same samples.
    lr.republish_as_new(1, "promote")
    assert lr.field is not None and lr.field[2] == FIELD_DEFER_MIN and lr.defer
