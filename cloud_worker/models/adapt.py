"""Label-free adaptation of a batch-normalised model to a drifted domain (AdaBN, Li et al. 2016).

At nightfall the camera's frames keep their content but change their statistics: darker, bluer,
noisier. A BN network normalises every layer with the day's means and variances, so night
activations land where the day's classes never were. Re-estimating those statistics on unlabelled
night frames puts them back; no weight is trained, no label is needed.

bench/bench_drift.py chose it (camera, cloud CNN on 248 labelled day frames, seeds 0 and 1): night
accuracy 0.27 / 0.25 -> 0.82 / 0.76 from 32 unlabelled night frames in about a second (0.81 / 0.79
from 512), where Tent reached 0.815 / 0.752 in 44-62 s and pseudo-label self-training, whose
fine-tune mixes day and night statistics, stayed at 0.27 / 0.24 (0.74 with AdaBN after it). The
adapted copy reads day frames badly (day holdout 0.89 / 0.91 -> 0.33 / 0.47), and one set of
statistics for both domains serves neither (night 0.41 / 0.32): so statistics are **per domain**,
the adapted copy answering a device only while its drift detector (shared/model/drift.py) says it is
in the new domain, the day model everywhere else.

- :func:`adapt_bn`: the adapted copy (the model handed in is never changed);
- :func:`judge`: the label-free check that refuses an adaptation;
- :func:`merge_labels`: pseudo-labels never override a person's label.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


def bn_layers(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_bn(model: nn.Module, unlabelled: np.ndarray, batch: int = 64) -> nn.Module:
    """A copy of ``model`` whose BN running statistics are those of ``unlabelled`` inputs (the
    cumulative mean over batches, not an exponential one: every frame counts the same). Weights and
    affine parameters are the original's. Raises ValueError when the model has no BN layer or fewer
    than two inputs are given (one sample has no variance)."""
    if len(unlabelled) < 2:
        raise ValueError(f"AdaBN needs at least 2 unlabelled inputs, got {len(unlabelled)}")
    m = copy.deepcopy(model).eval()
    bns = bn_layers(m)
    if not bns:
        raise ValueError(f"{type(model).__name__} has no batch-norm layer to adapt")
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()  # only the BN layers: dropout stays off
    device = next(m.parameters()).device
    # Even chunks, none of one sample (BN in training mode refuses a batch of one).
    for chunk in np.array_split(np.arange(len(unlabelled)), max(1, -(-len(unlabelled) // batch))):
        m(torch.as_tensor(np.asarray(unlabelled[chunk]), dtype=torch.float32, device=device))
    for bn, mom in zip(bns, momenta, strict=True):
        bn.momentum = mom
    return m.eval()


def entropy(probs: np.ndarray) -> np.ndarray:
    """Per-row prediction entropy in nats."""
    p = np.clip(np.asarray(probs, np.float64), 1e-12, 1.0)
    return -(p * np.log(p)).sum(1)


@dataclass(frozen=True)
class Verdict:
    """Whether an adaptation may serve, and the label-free evidence it was judged on."""

    accepted: bool
    reasons: tuple[str, ...]  # why not (empty when accepted)
    agreement: float  # on the day holdout: what serves day frames after vs before, where before was sure
    confident: int  # how many day holdout frames the model before was sure of
    entropy_new: float  # mean prediction entropy of the adapted model on the new inputs, over log(classes)
    day_before: float  # accuracy on the day holdout of what serves day frames, before and after
    day_after: float


def judge(after_new: np.ndarray, day_before: np.ndarray, day_after: np.ndarray, day_y: np.ndarray, *,
          confident: float = 0.9, min_agreement: float = 0.9, max_entropy: float = 0.9,
          max_day_drop: float = 0.01) -> Verdict:
    """Label-free sanity check of an adaptation. ``after_new``: the adapted model's class probabilities on
    the unlabelled new-domain inputs; ``day_before`` / ``day_after``: those, on the day holdout, of what
    serves day frames before and after (under per-domain statistics the day model both times); ``day_y``:
    the holdout's labels, the only labels used.

    Refused when what serves day frames changes its answer on more than ``1 - min_agreement`` of the
    holdout frames it was sure of (>= ``confident``); when the adapted model is lost on the new inputs
    (mean entropy above ``max_entropy`` of the uniform answer's); when the day holdout's accuracy falls
    by more than ``max_day_drop``.

    Agreement and entropy are *not* judged on the new inputs against the unadapted model: at nightfall
    the day model is confidently wrong there (bench/bench_drift.py seed 1: sure of 193 of 512 night
    frames at 0.25 accuracy), so agreeing with it, or being as sure as it, would refuse the adaptation
    that took it to 0.785."""
    after_new, day_before, day_after = np.asarray(after_new), np.asarray(day_before), np.asarray(day_after)
    day_y = np.asarray(day_y)
    if after_new.ndim != 2 or len(after_new) == 0:
        raise ValueError(f"probabilities of non-empty new inputs expected, got {after_new.shape}")
    if day_before.shape != day_after.shape or day_before.shape[:1] != day_y.shape or len(day_y) == 0:
        raise ValueError(f"day holdout probabilities before {day_before.shape} and after {day_after.shape} "
                         f"of its {day_y.shape} labels expected")
    sure = day_before.max(1) >= confident
    agreement = float((day_before[sure].argmax(1) == day_after[sure].argmax(1)).mean()) if sure.any() else 1.0
    h = float(entropy(after_new).mean() / np.log(after_new.shape[1]))
    acc0, acc1 = float((day_before.argmax(1) == day_y).mean()), float((day_after.argmax(1) == day_y).mean())
    reasons = []
    if agreement < min_agreement:
        reasons.append(f"day frames: agrees with the model before on {agreement:.3f} of the {int(sure.sum())} it "
                       f"was sure of (< {min_agreement})")
    if h > max_entropy:
        reasons.append(f"lost on the new inputs: mean entropy {h:.3f} of the uniform answer's (> {max_entropy})")
    if acc1 < acc0 - max_day_drop:
        reasons.append(f"day holdout fell from {acc0:.3f} to {acc1:.3f} (more than {max_day_drop})")
    return Verdict(not reasons, tuple(reasons), agreement, int(sure.sum()), h, acc0, acc1)


NO_LABEL = -1
PERSON, PSEUDO, NONE = 2, 1, 0  # where a training label came from


def merge_labels(person: np.ndarray, pseudo: np.ndarray, pseudo_conf: np.ndarray,
                 tau: float) -> tuple[np.ndarray, np.ndarray]:
    """The labels to train on, per sample: a person's label wherever there is one (``person`` >= 0), else
    the pseudo-label where its confidence reaches ``tau``, else ``NO_LABEL``. A pseudo-label never
    overrides a person's, however sure the model is. Returns (labels, source: PERSON / PSEUDO / NONE)."""
    person, pseudo, conf = np.asarray(person), np.asarray(pseudo), np.asarray(pseudo_conf)
    if not person.shape == pseudo.shape == conf.shape or person.ndim != 1:
        raise ValueError(f"one label, pseudo-label and confidence per sample expected: {person.shape}, "
                         f"{pseudo.shape}, {conf.shape}")
    has_person = person >= 0
    use_pseudo = ~has_person & (conf >= tau)
    labels = np.where(has_person, person, np.where(use_pseudo, pseudo, NO_LABEL)).astype(np.int64)
    source = np.where(has_person, PERSON, np.where(use_pseudo, PSEUDO, NONE)).astype(np.int8)
    return labels, source
