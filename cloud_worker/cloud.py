"""The cloud model: what answers escalations, and the teacher for pseudo-labels.

Two candidates, both measured on the holdout, and the better one on the samples agents would
escalate answers (the scoreboard in docs/TASKS.md compares them per scenario):

- **raw**: the task's cloud network (bigger than the edge model) on raw model inputs: the seed
  set plus the escalated samples that got a label. Strong when it sees enough raw inputs.
- **features**: the DDNN-style cloud section: a wider MLP on the features the deployed edge
  backbone computes, trained on every fused labelled row the hub sends (plus the seed and raw rows
  through the same backbone). It learns from far more rows than the raw model, but sees only what
  the edge backbone extracted.

Either way it is immutable once handed to the answering thread (swapped by reference).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from lepton_tasks import Task

from . import nets, train
from .config import TrainSettings
from .registry import Registry, torch_bytes


@dataclass
class CloudModel:
    net: nn.Module
    name: str
    accuracy: float  # on the holdout
    device: torch.device
    kind: str = "raw"  # "raw": net maps model inputs to logits; "features": edge backbone, then net
    backbone: nn.Module | None = None
    backbone_version: int = 0

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        xt = torch.as_tensor(x, dtype=torch.float32, device=self.device)
        if self.backbone is not None:
            xt = self.backbone(xt)
        return torch.softmax(train.logits_of(self.net, xt), dim=1).cpu().numpy()


def feature_head(feat_dim: int, n_classes: int, width: int = 256) -> nn.Module:
    """The cloud section on edge features: wider and deeper than the edge's own head."""
    return nn.Sequential(nn.Linear(feat_dim, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, n_classes))


class CloudTrainer:
    def __init__(self, task: Task, training: TrainSettings, registry: Registry, device: torch.device,
                 hold_x: np.ndarray, hold_y: np.ndarray) -> None:
        self.task = task
        self.t = training
        self.registry = registry
        self.device = device
        self.hold_x, self.hold_y = hold_x, hold_y

    def raw(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, generation: int,
            init: nn.Module | None = None) -> CloudModel:
        """Fit (or fine-tune ``init``) the task's cloud network on raw inputs; saved to the registry."""
        t = self.t
        net = copy.deepcopy(init) if init is not None else nets.build_cloud(self.task)
        train.fit(net, x, y, weights=w, epochs=t.cloud_epochs if init is None else max(1, t.cloud_epochs // 3),
                  lr=t.cloud_lr, batch=t.batch, device=self.device, seed=t.seed)
        acc = train.accuracy(net, self.hold_x, self.hold_y, self.device)
        model = CloudModel(net.eval(), f"{self.task.name}-cloud-{generation}", acc, self.device)
        self.registry.save_cloud(self.task.name, torch_bytes(net.state_dict()),
                                 {"name": model.name, "accuracy": acc, "generation": generation, "rows": len(y)})
        return model

    def features(self, edge: nets.EdgeNet, version: int, feats: np.ndarray, y: np.ndarray, w: np.ndarray) -> CloudModel:
        """A cloud section on ``edge``'s features (rows made by that backbone), judged on the holdout."""
        head = feature_head(edge.feat_dim, len(self.task.classes))
        train.fit_head(head, feats, y, weights=w, epochs=self.t.head_epochs, device=self.device, seed=self.t.seed)
        backbone = copy.deepcopy(edge.backbone).to(self.device).eval()
        m = CloudModel(head.eval(), f"{self.task.name}-cloud-features-v{version}", 0.0, self.device, "features",
                       backbone, version)
        m.accuracy = float((m.predict(self.hold_x).argmax(1) == self.hold_y).mean()) if len(self.hold_y) else 0.0
        return m
