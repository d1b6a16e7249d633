"""Label-free adaptation: AdaBN brings a BN network back on darkened inputs and leaves the original
alone; the guard refuses a copy that misreads day frames, is lost on the new ones, or costs the day
holdout more than a point; pseudo-labels never override a person.

The darkened set is synthetic and large-gap on purpose: four stripe patterns, then the same patterns
at a fifth of the light, blue-cast and noisy (as the camera's night). A network trained on the lit
patterns without augmentation normalises night activations with the day's statistics and falls
towards chance; with the night's statistics it reads them again. The margin asserted is a fraction
of the gap measured (0.25 -> 1.0 on this box), so no CPU's arithmetic decides the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cloud_worker.models import nets, train
from cloud_worker.models.adapt import (
    NO_LABEL,
    NONE,
    PERSON,
    PSEUDO,
    adapt_bn,
    bn_layers,
    entropy,
    judge,
    merge_labels,
)

S = 16


def patterns(n: int, rng: np.random.Generator, *, night: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, S, S) stripes: horizontal, vertical, diagonal, checker (class = pattern), random phase."""
    y = rng.integers(0, 4, n)
    yy, xx = np.mgrid[0:S, 0:S]
    x = np.empty((n, 3, S, S), np.float32)
    for i in range(n):
        ph = rng.integers(0, 4)
        g = [(yy + ph) // 2 % 2, (xx + ph) // 2 % 2, (xx + yy + ph) // 2 % 2, ((xx + ph) // 2 + yy // 2) % 2][y[i]]
        img = 0.25 + 0.5 * g * rng.uniform(0.7, 1.0)
        x[i] = img[None] * rng.uniform(0.85, 1.15, (3, 1, 1)) + rng.normal(0, 0.03, (3, S, S))
    if night:
        x = x * 0.2 + 0.05
        x *= np.array([0.75, 0.95, 1.35], np.float32)[:, None, None]
        x += rng.normal(0, 0.02, x.shape).astype(np.float32)
    return x.astype(np.float32), y


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = patterns(600, rng)
    net = nets.image_cloud((3, S, S), 4, width=8)
    train.fit(net, x, y, epochs=8, lr=3e-3, batch=32, device=torch.device("cpu"), seed=0, jitter=False,
              onecycle=True)
    return net, rng


def _acc(net, x, y) -> float:
    return float((train.predict_logits(net, x, torch.device("cpu")).argmax(1) == y).mean())


def test_adabn_brings_the_model_back_on_darkened_inputs_and_leaves_the_original_alone(trained):
    net, _ = trained
    rng = np.random.default_rng(1)
    x_day, y_day = patterns(300, rng)
    pool, _ = patterns(256, rng, night=True)
    x_night, y_night = patterns(300, rng, night=True)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    adapted = adapt_bn(net, pool)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "the original changed"
    assert adapted is not net
    day, night, night_adapted = _acc(net, x_day, y_day), _acc(net, x_night, y_night), _acc(adapted, x_night, y_night)
    assert day > 0.9  # the model learned the lit patterns
    assert night_adapted > night + 0.3, (night, night_adapted)
    # Only statistics moved: every weight and BN affine parameter is the original's.
    a, b = dict(net.named_parameters()), dict(adapted.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(x.running_mean, y.running_mean) for x, y in zip(bn_layers(net), bn_layers(adapted),
                                                                              strict=True))


def test_adabn_refuses_what_it_cannot_use(trained):
    net, _ = trained
    with pytest.raises(ValueError):
        adapt_bn(net, np.zeros((1, 3, S, S), np.float32))
    with pytest.raises(ValueError):
        adapt_bn(nets.image_edge((3, S, S), 4), np.zeros((8, 3, S, S), np.float32))  # no BN: nothing to adapt


def _probs(y: np.ndarray, p: float, classes: int = 4) -> np.ndarray:
    out = np.full((len(y), classes), (1 - p) / (classes - 1))
    out[np.arange(len(y)), y] = p
    return out


def test_judge_accepts_per_domain_statistics_and_refuses_each_failure():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 200)
    day = _probs(y, 0.95)
    day[:20] = _probs((y[:20] + 1) % 4, 0.95)[:]  # the day model: 0.90 on its holdout
    night = _probs(rng.integers(0, 4, 300), 0.7)  # the adapted model, fairly sure at night
    ok = judge(night, day, day, y)  # per-domain: the day model still serves day frames
    assert ok.accepted and ok.agreement == 1.0 and ok.confident == 200 and ok.day_after == ok.day_before == 0.9
    scrambled = np.roll(day, 1, axis=1)  # a copy serving day frames that reads them wrongly
    v = judge(night, day, scrambled, y)
    assert not v.accepted and v.agreement == 0.0
    assert any("agrees" in r for r in v.reasons) and any("day holdout" in r for r in v.reasons)
    lost = np.full((300, 4), 0.25)
    v = judge(lost, day, day, y)
    assert not v.accepted and v.entropy_new > 0.99 and "lost" in v.reasons[0]
    slip = day.copy()
    slip[20:23] = np.roll(slip[20:23], 1, axis=1)  # 3 right answers lost: 1.5 points
    v = judge(night, day, slip, y, min_agreement=0.0)
    assert not v.accepted and "day holdout" in v.reasons[0]
    slip[21:23] = day[21:23]  # 1 lost: half a point, within the allowance
    assert judge(night, day, slip, y).accepted
    with pytest.raises(ValueError):
        judge(night, day, day[:10], y)


def test_entropy_is_zero_for_a_certain_answer_and_log_c_for_a_uniform_one():
    assert entropy(np.eye(3)).max() < 1e-9
    assert np.allclose(entropy(np.full((2, 4), 0.25)), np.log(4))


def test_a_pseudo_label_never_overrides_a_persons_label():
    person = np.array([2, NO_LABEL, NO_LABEL, 0, NO_LABEL])
    pseudo = np.array([1, 3, 1, 3, 2])
    conf = np.array([1.0, 0.95, 0.5, 0.99, 0.9])
    labels, source = merge_labels(person, pseudo, conf, tau=0.9)
    assert labels.tolist() == [2, 3, NO_LABEL, 0, 2]
    assert source.tolist() == [PERSON, PSEUDO, NONE, PERSON, PSEUDO]
    rng = np.random.default_rng(4)
    person = np.where(rng.random(1000) < 0.3, rng.integers(0, 4, 1000), NO_LABEL)
    labels, source = merge_labels(person, rng.integers(0, 4, 1000), rng.random(1000), tau=0.0)
    assert (labels[person >= 0] == person[person >= 0]).all() and (source[person >= 0] == PERSON).all()
    with pytest.raises(ValueError):
        merge_labels(person, pseudo, conf, 0.9)
