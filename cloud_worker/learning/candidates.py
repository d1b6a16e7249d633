"""Training a candidate edge model from what the learner holds: pure training, no registry, no MQTT.

Two kinds:

- **whole**: the whole model, taught by the cloud (distillation). It learns from the seed set,
  from every labelled raw sample (its label, mixed with the cloud's soft answer by ``distill``),
  and from every raw sample no person labelled (an escalation the cloud answered, a window that
  came with its feature row), from the cloud's soft answer alone, at a lower weight. The backbone
  changes, so feature rows the hub holds from older backbones stop counting for the head.
- **head**: only the head is fine-tuned, on features. The backbone stays, so features the hub
  holds stay valid, and every fused labelled row can be used (rows of versions that share this
  backbone); the seed and raw rows are passed through the backbone to join them.

Every candidate is calibrated (a temperature fitted on the holdout) before the gate sees it.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass

import numpy as np
import torch

from cloud_worker.config import TrainSettings
from cloud_worker.learning.buffer import Row
from cloud_worker.models import augment, nets, train
from cloud_worker.models.calibrate import fit_temperature


@dataclass
class Candidate:
    net: nets.EdgeNet
    kind: str  # "whole" | "head"
    stats: train.FitStats
    data: dict[str, int]


@dataclass
class HeadSet:
    feat: np.ndarray
    y: np.ndarray
    w: np.ndarray
    data: dict[str, int]


@dataclass
class WholeSet:
    """What a whole-model candidate learns from: edge inputs, labels (or the cloud's guess), weights,
    the cloud's probabilities on every row (None: no teacher), and which rows are ground truth."""

    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    truth: np.ndarray  # bool
    teacher: np.ndarray | None
    data: dict[str, int]

    def targets(self, alpha: float, n_classes: int) -> np.ndarray | None:
        """Soft targets: ground truth mixed with the teacher by ``alpha``; the teacher alone elsewhere."""
        if self.teacher is None:
            return None
        onehot = np.eye(n_classes, dtype=np.float32)[self.y]
        t = self.teacher.astype(np.float32)
        mixed = (1.0 - alpha) * onehot + alpha * t
        return np.where(self.truth[:, None], mixed, t)


def head_set(edge: nets.EdgeNet, seed_x: np.ndarray, seed_y: np.ndarray, raw_x: np.ndarray, raw_rows: list[Row],
             feature_rows: list[Row], backbone_of: dict[int, int], backbone: int, device: torch.device) -> HeadSet:
    """Features for a head fine-tune (or the cloud's feature section): seed and labelled raw rows through
    ``edge``'s backbone, plus the hub's feature rows made by a version sharing that backbone."""
    xs = [seed_x] + ([raw_x] if len(raw_rows) else [])
    feats = [train.features(edge, np.concatenate(xs), device)]
    ys = [seed_y, np.array([r.label for r in raw_rows], np.int64)]
    ws = [np.ones(len(seed_y), np.float32), np.array([r.weight for r in raw_rows], np.float32)]
    raw_keys = {r.key for r in raw_rows}
    frows, stale = [], 0
    for r in feature_rows:
        if backbone_of.get(r.version, r.version) != backbone:
            stale += 1
        elif r.key not in raw_keys:  # a raw row already stands for this sample
            frows.append(r)
    if frows:
        feats.append(np.stack([r.data for r in frows]))
        ys.append(np.array([r.label for r in frows], np.int64))
        ws.append(np.array([r.weight for r in frows], np.float32))
    data = {"seed": len(seed_y), "raw": sum(not r.pseudo for r in raw_rows),
            "pseudo": sum(r.pseudo for r in raw_rows) + sum(r.pseudo for r in frows),
            "features": sum(not r.pseudo for r in frows), "features_other_backbone": stale}
    return HeadSet(np.concatenate(feats), np.concatenate(ys), np.concatenate(ws), data)


class CandidateTrainer:
    def __init__(self, training: TrainSettings, device: torch.device, kind: str, n_classes: int,
                 hold_x: np.ndarray, hold_y: np.ndarray, stop: threading.Event | None = None) -> None:
        self.t = training
        self.device = device
        self.kind = kind
        self.n_classes = n_classes
        self.hold_x, self.hold_y = hold_x, hold_y
        self.stop = stop

    def calibrate(self, net: nets.EdgeNet) -> float:
        """Fit and set the candidate's temperature on the holdout."""
        temp = fit_temperature(train.predict_logits(net, self.hold_x, self.device), self.hold_y)
        net.temperature.fill_(temp)
        return temp

    def wrong(self, y: np.ndarray) -> np.ndarray:
        """Labels for a deliberately bad candidate: each class named as the next one, as a class-order bug
        would. Shuffled labels were not bad enough: a dozen fine-tuning epochs from a good edge left its
        answers almost as they were (field 0.63 against 0.67), only less sure."""
        return (np.asarray(y) + 1) % self.n_classes

    def whole(self, base: nets.EdgeNet, ws: WholeSet, rng: np.random.Generator, label_noise: bool = False) -> Candidate:
        t = self.t
        cand = copy.deepcopy(base)
        y = self.wrong(ws.y) if label_noise else ws.y
        soft = None if label_noise else ws.targets(t.distill, self.n_classes)
        stats = train.fit(cand, ws.x, y, weights=ws.w, soft=soft, epochs=t.whole_epochs, lr=t.lr / 3, batch=t.batch,
                          device=self.device, seed=t.seed, augment=augment.for_kind(self.kind), stop=self.stop)
        self.calibrate(cand)
        return Candidate(cand, "whole", stats, ws.data)

    def head(self, base: nets.EdgeNet, hs: HeadSet, rng: np.random.Generator, label_noise: bool = False) -> Candidate:
        cand = copy.deepcopy(base)
        y = self.wrong(hs.y) if label_noise else hs.y
        stats = train.fit_head(cand.head, hs.feat, y, weights=hs.w, epochs=self.t.head_epochs, device=self.device,
                               seed=self.t.seed, stop=self.stop)
        self.calibrate(cand)
        return Candidate(cand, "head", stats, hs.data)
