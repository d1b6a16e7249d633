"""Training-time augmentation: what a camera or a sensor varies that the label does not.

Images (N, C, H, W): shifts of up to an eighth of the frame (edges replicated), brightness,
contrast and per-channel gain (light and white balance change through the day, and night is a
darker, bluer, noisier frame), and sensor noise. No flips: a mirrored digit or arrow is another class. Windows (N, C, T): a shift by a few
steps and a small gain. The tiny edge inputs use the mild ``jitter`` (a one-step shift), as before.
Every transform is seeded by the caller's generator, so training stays deterministic on one device.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _u(n: int, lo: float, hi: float, gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand((n, *shape), generator=gen) * (hi - lo) + lo


def _shift(x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
    """Each sample cropped at its own offset from an edge-replicated pad; one slice per distinct offset."""
    h, w = x.shape[-2], x.shape[-1]
    padded = F.pad(x, (pw, pw, ph, ph), mode="replicate")
    out = torch.empty_like(x)
    codes = oy * (2 * pw + 1) + ox
    for code in codes.unique().tolist():
        idx = (codes == code).nonzero(as_tuple=True)[0]
        y0, x0 = divmod(int(code), 2 * pw + 1)
        out[idx] = padded[idx, :, y0:y0 + h, x0:x0 + w]
    return out


def image(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, c, h, w = x.shape
    ph, pw = max(1, h // 8), max(1, w // 8)
    x = _shift(x, torch.randint(0, 2 * ph + 1, (n,), generator=gen), torch.randint(0, 2 * pw + 1, (n,), generator=gen),
               ph, pw)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    contrast = _u(n, 0.6, 1.3, gen, 1, 1, 1)
    gain = _u(n, 0.25, 1.3, gen, 1, 1, 1) * _u(n, 0.75, 1.3, gen, c, 1, 1)
    x = ((x - mean) * contrast + mean) * gain + _u(n, 0.0, 0.1, gen, 1, 1, 1)
    x = x + torch.randn(x.shape, generator=gen) * _u(n, 0.0, 0.06, gen, 1, 1, 1)
    return x


def window(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, t = x.shape
    k = max(1, t // 50)
    shifts = torch.randint(-k, k + 1, (n,), generator=gen)
    out = torch.empty_like(x)
    for s in shifts.unique().tolist():
        idx = (shifts == s).nonzero(as_tuple=True)[0]
        out[idx] = torch.roll(x[idx], int(s), dims=2)
    return out * _u(n, 0.9, 1.1, gen, 1, 1)


def jitter(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each sample by up to one step along its spatial/time axes (zero fill): the jitter a camera
    crop or a sensor window boundary introduces."""
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


def for_kind(kind: str) -> Augment:
    """The strong augmentation of a task kind (cloud models, and edge models learning from raw samples)."""
    return image if kind == "image" else window
