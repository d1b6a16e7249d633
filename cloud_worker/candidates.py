"""Training a candidate edge model from what the learner holds: pure training, no registry, no MQTT.

Two kinds:

- **head**: only the head is fine-tuned, on features. The backbone stays, so features the hub
  holds stay valid, and every fused labelled row can be used (rows of versions that share this
  backbone); the seed and raw rows are passed through the backbone to join them.
- **whole**: the whole model on raw inputs (seed plus labelled escalated samples, pseudo-labels at a
  lower weight), with the cloud model as a teacher when it is the better one.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch

from . import nets, train
from .buffer import Row
from .config import TrainSettings


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


def head_set(edge: nets.EdgeNet, seed_x: np.ndarray, seed_y: np.ndarray, raw_rows: list[Row],
             feature_rows: list[Row], backbone_of: dict[int, int], backbone: int, device: torch.device) -> HeadSet:
    """Features for a head fine-tune (or the cloud's feature section): seed and raw rows through
    ``edge``'s backbone, plus the hub's feature rows made by a version sharing that backbone."""
    xs = [seed_x] + ([np.stack([r.data for r in raw_rows])] if raw_rows else [])
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
    def __init__(self, training: TrainSettings, device: torch.device, seed_x: np.ndarray, seed_y: np.ndarray) -> None:
        self.t = training
        self.device = device
        self.seed_x, self.seed_y = seed_x, seed_y

    def whole(self, base: nets.EdgeNet, raw_rows: list[Row], teacher: torch.nn.Module | None,
              rng: np.random.Generator, label_noise: bool = False) -> Candidate:
        t = self.t
        cand = copy.deepcopy(base)
        x = np.concatenate([self.seed_x, *([np.stack([r.data for r in raw_rows])] if raw_rows else [])])
        y = np.concatenate([self.seed_y, np.array([r.label for r in raw_rows], np.int64)])
        w = np.concatenate([np.ones(len(self.seed_y), np.float32), np.array([r.weight for r in raw_rows], np.float32)])
        if label_noise:
            y = rng.permutation(y)
        stats = train.fit(cand, x, y, weights=w, epochs=t.whole_epochs, lr=t.lr / 3, batch=t.batch,
                          device=self.device, seed=t.seed, teacher=teacher, distill=0.5 if teacher else 0.0)
        data = {"seed": len(self.seed_y), "raw": sum(not r.pseudo for r in raw_rows),
                "pseudo": sum(r.pseudo for r in raw_rows), "features": 0}
        return Candidate(cand, "whole", stats, data)

    def head(self, base: nets.EdgeNet, hs: HeadSet, rng: np.random.Generator, label_noise: bool = False) -> Candidate:
        cand = copy.deepcopy(base)
        y = rng.permutation(hs.y) if label_noise else hs.y
        stats = train.fit_head(cand.head, hs.feat, y, weights=hs.w, epochs=self.t.head_epochs, device=self.device,
                               seed=self.t.seed)
        return Candidate(cand, "head", stats, hs.data)
