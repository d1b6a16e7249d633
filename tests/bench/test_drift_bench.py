"""The drift bench's own methods: Tent moves only the BN affine parameters of a copy; pseudo-label
self-training keeps only the teacher's confident answers; neither touches the model it is given."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_drift as b  # noqa: E402

from cloud_worker.models import nets  # noqa: E402


def _net():
    torch.manual_seed(0)
    return nets.image_cloud((3, 16, 16), 4, width=8).eval()


def test_tent_adapts_only_bn_affine_parameters_of_a_copy():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    x = np.random.default_rng(0).random((64, 3, 16, 16), dtype=np.float32)
    adapted = b.tent(net, x, steps=3, lr=1e-2, batch=32, seed=0)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    bn = {n for n, m in adapted.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    moved = {k for k, v in adapted.named_parameters() if not torch.equal(v, dict(net.named_parameters())[k])}
    assert moved and all(k.rsplit(".", 1)[0] in bn for k in moved), moved


def test_pseudo_labels_keep_only_confident_answers_and_leave_the_model_alone():
    net = _net()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rng = np.random.default_rng(1)
    pool = rng.random((10, 3, 16, 16), dtype=np.float32)
    p = np.full((10, 4), 0.1)
    p[:, 0] = 0.7
    p[:3] = [0.97, 0.01, 0.01, 0.01]
    student, keep = b.pseudo_label(net, p, pool, pool[:4], np.array([0, 1, 2, 3]), tau=0.9, epochs=1, lr=1e-3,
                                   batch=8, seed=0)
    assert keep.tolist() == [True] * 3 + [False] * 7
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert student is not net
