"""Training loops: whole-model fits on raw inputs, head-only fits on features, evaluation.

Small and deterministic (seeded), sized for a 2-core box: the seed sets are tiny, so full
passes over the data take milliseconds; the same code runs on CUDA when the config asks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cloud_worker.config import DeviceUnavailable
from cloud_worker.models import augment as aug_mod
from cloud_worker.models.augment import Augment
from cloud_worker.models.stopcheck import Interrupted, check, current, watching


@dataclass(frozen=True)
class FitStats:
    samples: int
    epochs: int
    seconds: float

    @property
    def samples_per_s(self) -> float:
        return self.samples * self.epochs / self.seconds if self.seconds > 0 else 0.0


def configure_torch(threads: int) -> None:
    """Intra-op threads for CPU work (0 keeps torch's default)."""
    if threads > 0:
        torch.set_num_threads(threads)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailable("device 'cuda' requested but torch sees no CUDA device (use device = \"auto\")")
    return torch.device(name)


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class logits: EdgeNet and CloudNet have ``logits``; a task's own cloud module returns them from forward."""
    f = getattr(model, "logits", None)
    return f(x) if f is not None else model(x)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, epochs: int,
        lr: float = 3e-3, batch: int = 64, device: torch.device, seed: int = 0, jitter: bool = True,
        params: list[nn.Parameter] | None = None, soft: np.ndarray | None = None, augment: Augment | None = None,
        onecycle: bool = False, smoothing: float = 0.0, stop: threading.Event | None = None) -> FitStats:
    """Weighted cross-entropy with AdamW. ``soft`` (N, C) replaces the one-hot targets (a teacher's
    probabilities, or a mix of them and the label: distillation); ``augment`` transforms each batch
    (default: the one-step ``jitter`` when ``jitter``); ``onecycle`` anneals the learning rate (for
    training from scratch); ``stop`` (default: the thread's watched event, cloud_worker/models/stopcheck.py)
    is checked every batch and every layer, forward and backward (raises Interrupted)."""
    with watching(stop if stop is not None else current()):
        return _fit(model, x, y, weights=weights, epochs=epochs, lr=lr, batch=batch, device=device, seed=seed,
                    jitter=jitter, params=params, soft=soft, augment=augment, onecycle=onecycle, smoothing=smoothing)


def _fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None, epochs: int, lr: float,
         batch: int, device: torch.device, seed: int, jitter: bool, params: list[nn.Parameter] | None,
         soft: np.ndarray | None, augment: Augment | None, onecycle: bool, smoothing: float) -> FitStats:
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    xt = torch.as_tensor(x)
    yt = torch.as_tensor(y, dtype=torch.long)
    st = torch.as_tensor(soft, dtype=torch.float32) if soft is not None else None
    wt = torch.as_tensor(np.ones(len(y), np.float32) if weights is None else weights, dtype=torch.float32)
    aug = augment if augment is not None else (aug_mod.jitter if jitter else None)
    opt = torch.optim.AdamW(params if params is not None else model.parameters(), lr=lr, weight_decay=1e-4)
    n = len(yt)
    steps = epochs * max(1, -(-n // batch))
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps) if onecycle and steps > 1 else None
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            try:
                check()
            except Interrupted:
                model.eval()
                raise
            idx = order[i:i + batch]
            xb = xt[idx].float()
            if aug is not None:
                xb = aug(xb, gen)
            xb, wb = xb.to(device), wt[idx].to(device)
            logits = logits_of(model, xb)
            if st is not None:
                loss_i = -(st[idx].to(device) * F.log_softmax(logits, dim=1)).sum(1)
            else:
                loss_i = F.cross_entropy(logits, yt[idx].to(device), reduction="none", label_smoothing=smoothing)
            loss = (loss_i * wb).sum() / wb.sum().clamp_min(1e-8)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return FitStats(n, epochs, time.perf_counter() - t0)


def fit_head(head: nn.Module, feat: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None,
             epochs: int, lr: float = 1e-2, batch: int = 128, device: torch.device, seed: int = 0,
             stop: threading.Event | None = None) -> FitStats:
    """Fine-tune only the linear head on stored features (the backbone is not touched)."""
    wrapper = _HeadOnly(head)
    return fit(wrapper, feat, y, weights=weights, epochs=epochs, lr=lr, batch=batch, device=device, seed=seed,
               jitter=False, stop=stop)


class _HeadOnly(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.head(f)


@torch.no_grad()
def predict_logits(model: nn.Module, x: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    model.to(device).eval()
    out = []
    for i in range(0, len(x), batch):
        check()  # and between layers: the forward hook (stopcheck)
        out.append(logits_of(model, torch.as_tensor(x[i:i + batch], dtype=torch.float32, device=device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def features_of(backbone: nn.Module, x: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    backbone.to(device).eval()
    out = []
    for i in range(0, len(x), batch):
        check()
        out.append(backbone(torch.as_tensor(x[i:i + batch], dtype=torch.float32, device=device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


def features(edge: nn.Module, x: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    return features_of(edge.backbone, x, device, batch)


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    if len(y) == 0:
        return 0.0
    return float((predict_logits(model, x, device).argmax(1) == y).mean())
