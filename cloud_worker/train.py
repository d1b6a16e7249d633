"""Training loops: whole-model fits on raw inputs, head-only fits on features, evaluation.

Small and deterministic (seeded), sized for a 2-core box: the seed sets are tiny, so full
passes over the data take milliseconds; the same code runs on CUDA when the config asks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .config import DeviceUnavailable


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


def augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each sample by up to one step along its spatial/time axes (zero fill): the
    jitter a camera crop or a sensor window boundary introduces."""
    n, spatial = x.shape[0], x.dim() - 2
    padded = F.pad(x, (1, 1) * spatial)
    shifts = torch.randint(0, 3, (n, spatial), generator=gen)
    out = torch.empty_like(x)
    # One slice per distinct shift (at most 9), not one per sample.
    codes = (shifts * torch.tensor([3 ** i for i in range(spatial)])).sum(1)
    for code in codes.unique().tolist():
        idx = (codes == code).nonzero(as_tuple=True)[0]
        offs = [(code // 3 ** i) % 3 for i in range(spatial)]
        sl = tuple(slice(o, o + x.shape[2 + i]) for i, o in enumerate(offs))
        out[idx] = padded[(idx, slice(None), *sl)]
    return out


def logits_of(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Class logits: EdgeNet and CloudNet have ``logits``; a task's own cloud module returns them from forward."""
    f = getattr(model, "logits", None)
    return f(x) if f is not None else model(x)


def fit(model: nn.Module, x: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None, epochs: int,
        lr: float = 3e-3, batch: int = 64, device: torch.device, seed: int = 0, jitter: bool = True,
        params: list[nn.Parameter] | None = None, teacher: nn.Module | None = None,
        distill: float = 0.0) -> FitStats:
    """Weighted cross-entropy (plus optional distillation from ``teacher``) with Adam."""
    import time

    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    xt = torch.as_tensor(x, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long)
    wt = torch.as_tensor(np.ones(len(y), np.float32) if weights is None else weights, dtype=torch.float32)
    opt = torch.optim.Adam(params if params is not None else model.parameters(), lr=lr, weight_decay=1e-4)
    if teacher is not None:
        teacher.to(device).eval()
    n = len(yt)
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        for i in range(0, n, batch):
            idx = order[i:i + batch]
            xb = augment(xt[idx], gen) if jitter else xt[idx]
            xb, yb, wb = xb.to(device), yt[idx].to(device), wt[idx].to(device)
            logits = logits_of(model, xb)
            loss = (F.cross_entropy(logits, yb, reduction="none") * wb).sum() / wb.sum()
            if teacher is not None and distill > 0:
                with torch.no_grad():
                    soft = torch.softmax(logits_of(teacher, xb), dim=1)
                loss = loss + distill * F.kl_div(F.log_softmax(logits, dim=1), soft, reduction="batchmean")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    model.eval()
    return FitStats(n, epochs, time.perf_counter() - t0)


def fit_head(head: nn.Module, feat: np.ndarray, y: np.ndarray, *, weights: np.ndarray | None = None,
             epochs: int, lr: float = 1e-2, batch: int = 128, device: torch.device, seed: int = 0) -> FitStats:
    """Fine-tune only the linear head on stored features (the backbone is not touched)."""
    wrapper = _HeadOnly(head)
    return fit(wrapper, feat, y, weights=weights, epochs=epochs, lr=lr, batch=batch, device=device, seed=seed,
               jitter=False)


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
        out.append(logits_of(model, torch.as_tensor(x[i:i + batch], dtype=torch.float32, device=device)).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), np.float32)


@torch.no_grad()
def features(edge: nn.Module, x: np.ndarray, device: torch.device, batch: int = 512) -> np.ndarray:
    edge.to(device).eval()
    out = [edge.backbone(torch.as_tensor(x[i:i + batch], dtype=torch.float32, device=device)).cpu()
           for i in range(0, len(x), batch)]
    return torch.cat(out).numpy()


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    if len(y) == 0:
        return 0.0
    return float((predict_logits(model, x, device).argmax(1) == y).mean())
