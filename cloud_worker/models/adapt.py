"""Label-free adaptation of a batch-normalised model to a drifted domain (AdaBN, Li et al. 2016).

At nightfall the camera's frames keep their content but change their statistics: darker, bluer,
noisier. A BN network normalises every layer with the day's means and variances, so night
activations land where the day's classes never were. Re-estimating those statistics on unlabelled
night frames puts them back; no weight is trained, no label is needed.

bench/bench_drift.py chose it (camera, cloud CNN on 248 labelled day frames, seed 0): night accuracy
0.27 -> 0.82 from 32 unlabelled night frames in under a second, where Tent reached the same 0.815 in
44 s and pseudo-label self-training, whose fine-tune mixes day and night statistics, stayed at 0.27.
The adapted copy reads day frames badly (day holdout 0.89 -> 0.33), and one set of statistics for
both domains serves neither (0.41 night, 0.73 day): so statistics are **per domain**, the adapted
copy answering a device only while its drift detector (shared/model/drift.py) says it is in the new
domain, the day model everywhere else.

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
    agreement: float  # with the unadapted model where it was confident on the new inputs (1.0: none were)
    confident: int  # how many new inputs the unadapted model was confident on
    entropy_before: float  # mean prediction entropy on the new inputs, unadapted then adapted
    entropy_after: float
    day_before: float  # accuracy on the day holdout of what serves day frames, before and after
    day_after: float


def judge(before_new: np.ndarray, after_new: np.ndarray, day_before: float, day_after: float, *,
          confident: float = 0.9, min_agreement: float = 0.9, max_entropy_rise: float = 0.0,
          max_day_drop: float = 0.01) -> Verdict:
    """Label-free sanity check of an adaptation, from class probabilities of the unadapted
    (``before_new``) and adapted (``after_new``) model on the same unlabelled new-domain inputs, and the
    day holdout's accuracy (the only labels used: the task's own holdout) of whatever serves day frames.

    Refused when: the adapted model disagrees with the unadapted one on the inputs the latter was sure
    of (>= ``confident``) more than ``1 - min_agreement`` of the time (adaptation scrambled what already
    worked); its mean entropy on the new inputs rose by more than ``max_entropy_rise`` (it was meant to
    make the model surer there, not less); the day holdout fell by more than ``max_day_drop``."""
    before_new, after_new = np.asarray(before_new), np.asarray(after_new)
    if before_new.shape != after_new.shape or before_new.ndim != 2 or len(before_new) == 0:
        raise ValueError(f"probabilities of the same non-empty inputs expected, got {before_new.shape} and "
                         f"{after_new.shape}")
    sure = before_new.max(1) >= confident
    agreement = float((before_new[sure].argmax(1) == after_new[sure].argmax(1)).mean()) if sure.any() else 1.0
    h0, h1 = float(entropy(before_new).mean()), float(entropy(after_new).mean())
    reasons = []
    if agreement < min_agreement:
        reasons.append(f"agrees with the unadapted model on {agreement:.3f} of its {int(sure.sum())} confident "
                       f"answers (< {min_agreement})")
    if h1 > h0 + max_entropy_rise:
        reasons.append(f"mean entropy on the new inputs rose from {h0:.3f} to {h1:.3f}")
    if day_after < day_before - max_day_drop:
        reasons.append(f"day holdout fell from {day_before:.3f} to {day_after:.3f} (more than {max_day_drop})")
    return Verdict(not reasons, tuple(reasons), agreement, int(sure.sum()), h0, h1, float(day_before),
                   float(day_after))


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
