"""The cloud's models: the one that sees raw samples, and the one that reads the edge's features.

- :class:`RawCloud` answers every escalation that carries its sample, through the task's cloud
  input contract (cloud_worker/models/nets.py: a CNN at twice the edge's resolution for frames, MiniRocket
  for windows). It learns from every labelled raw sample the worker holds, and teaches the edge.
- :class:`FeatureCloud` (DDNN-style) is a wider MLP on the deployed edge backbone's features, for
  escalations that carry features only (``decision.raw_every`` > 1), trained on the fused labelled
  feature rows the hub sends.

Both are immutable once handed to the answering thread (the learner swaps them by reference).
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from cloud_worker.config import TrainSettings
from cloud_worker.models import augment, nets, train
from cloud_worker.models.calibrate import fit_temperature, softmax
from cloud_worker.models.stopcheck import watching
from cloud_worker.registry import Registry, torch_bytes, torch_load
from lepton_tasks import Task


@dataclass
class RawCloud:
    model: Any  # a torch module returning logits, or a classifier with fit/predict_proba
    name: str
    accuracy: float  # on the holdout
    device: torch.device
    temperature: float = 1.0
    generation: int = 1
    rows: int = 0
    train_s: float = 0.0
    kind: str = "raw"
    # Its probabilities on the holdout, kept from its fit: scoring a new edge against it must not run the
    # cloud model again (seconds for MiniRocket on a loaded box, inside a version's registration).
    holdout_probs: np.ndarray | None = None

    @property
    def is_torch(self) -> bool:
        return isinstance(self.model, nn.Module)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of cloud inputs (N, *cloud_input_shape)."""
        if not self.is_torch:
            return self.model.predict_proba(np.asarray(x, np.float32))
        return softmax(train.predict_logits(self.model, np.asarray(x, np.float32), self.device), self.temperature)


@dataclass
class FeatureCloud:
    net: nn.Module
    name: str
    accuracy: float
    device: torch.device
    backbone: nn.Module
    backbone_version: int
    kind: str = "features"

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities of edge inputs (through the edge backbone it was trained on)."""
        feats = train.features_of(self.backbone, x, self.device)
        return self.predict_features(feats)

    @torch.no_grad()
    def predict_features(self, feat: np.ndarray) -> np.ndarray:
        logits = train.logits_of(self.net, torch.as_tensor(feat, dtype=torch.float32, device=self.device))
        return torch.softmax(logits, dim=1).cpu().numpy()


def feature_head(feat_dim: int, n_classes: int, width: int = 256) -> nn.Module:
    """The cloud section on edge features: wider and deeper than the edge's own head."""
    return nn.Sequential(nn.Linear(feat_dim, width), nn.ReLU(), nn.Dropout(0.1), nn.Linear(width, width), nn.ReLU(),
                         nn.Linear(width, n_classes))


class CloudTrainer:
    def __init__(self, task: Task, training: TrainSettings, registry: Registry, device: torch.device,
                 hold_cx: np.ndarray, hold_y: np.ndarray, hold_x: np.ndarray,
                 stop: threading.Event | None = None) -> None:
        self.task = task
        self.t = training
        self.registry = registry
        self.device = device
        self.hold_cx, self.hold_y, self.hold_x = hold_cx, hold_y, hold_x
        self.stop = stop
        # The factory's module is imported here, on the caller's thread: importing aeon on the fit thread
        # took seconds on a loaded box and cannot be interrupted (a stop waited for it).
        nets.build_cloud(task)

    def raw(self, x: np.ndarray, y: np.ndarray, generation: int, init: RawCloud | None = None) -> RawCloud:
        """Fit the task's cloud model on cloud inputs: a torch network from scratch, or fine-tuned from
        ``init`` (continual: every refresh adds a few epochs over everything labelled); a classifier
        refitted. Calibrated and scored on the holdout; :meth:`save` keeps it. Every step checks the stop event."""
        with watching(self.stop):
            return self._raw(x, y, generation, init)

    def _raw(self, x: np.ndarray, y: np.ndarray, generation: int, init: RawCloud | None) -> RawCloud:
        t = self.t
        warm = init is not None and init.is_torch
        model = copy.deepcopy(init.model) if warm else nets.build_cloud(self.task)
        if isinstance(model, nn.Module):
            stats = train.fit(model, x, y, epochs=t.cloud_refresh_epochs if warm else t.cloud_epochs,
                              lr=t.cloud_lr / 3 if warm else t.cloud_lr, batch=t.batch, device=self.device,
                              seed=t.seed + generation, augment=augment.for_kind(self.task.kind), onecycle=True,
                              smoothing=0.05)
            temp = fit_temperature(train.predict_logits(model, self.hold_cx, self.device), self.hold_y)
        else:
            stats = model.fit(x, y)
            temp = model.calibrate(self.hold_cx, self.hold_y)
        cloud = RawCloud(model, f"{self.task.name}-cloud-{generation}", 0.0, self.device, temp, generation, len(y),
                         stats.seconds)
        cloud.holdout_probs = cloud.predict(self.hold_cx)
        cloud.accuracy = _acc(cloud.holdout_probs, self.hold_y)
        return cloud

    def save(self, cloud: RawCloud) -> None:
        """Keep the answering model across restarts: a torch network's weights; a classifier is refitted
        from the stored raw rows instead, so only its record is written."""
        state = torch_bytes({k: v.cpu() for k, v in cloud.model.state_dict().items()}) if cloud.is_torch else b""
        self.registry.save_cloud(self.task.name, state, {
            "name": cloud.name, "accuracy": cloud.accuracy, "generation": cloud.generation, "rows": cloud.rows,
            "temperature": cloud.temperature, "kind": "torch" if cloud.is_torch else type(cloud.model).__name__,
            "train_s": cloud.train_s})

    def load(self) -> RawCloud | None:
        """The saved torch cloud model (None when there is none, or the model is a classifier: refit)."""
        saved = self.registry.load_cloud(self.task.name)
        if saved is None or not saved[0] or saved[1].get("kind") not in (None, "torch"):
            return None
        state, meta = saved
        net = nets.build_cloud(self.task)
        if not isinstance(net, nn.Module):
            return None
        try:
            net.load_state_dict(torch_load(state))
        except (RuntimeError, KeyError):  # a model of another shape (the task's cloud contract changed)
            return None
        return RawCloud(net.to(self.device).eval(), meta["name"], float(meta["accuracy"]), self.device,
                        float(meta.get("temperature", 1.0)), int(meta.get("generation", 1)), int(meta.get("rows", 0)))

    def features(self, edge: nets.EdgeNet, version: int, feats: np.ndarray, y: np.ndarray,
                 w: np.ndarray) -> FeatureCloud:
        """A cloud section on ``edge``'s features (rows made by that backbone), judged on the holdout."""
        with watching(self.stop):
            head = feature_head(edge.feat_dim, len(self.task.classes))
            train.fit_head(head, feats, y, weights=w, epochs=self.t.head_epochs, device=self.device,
                           seed=self.t.seed)
            backbone = copy.deepcopy(edge.backbone).to(self.device).eval()
            m = FeatureCloud(head.eval(), f"{self.task.name}-cloud-features-v{version}", 0.0, self.device, backbone,
                             version)
            m.accuracy = _acc(m.predict(self.hold_x), self.hold_y)
            return m


def _acc(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean()) if len(y) else 0.0
