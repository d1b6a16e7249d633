"""Preprocessing as data: a list of named steps that the manifest carries and both sides run.

The cloud worker trains on samples passed through exactly this code, and writes the step
list into the model manifest's ``input.preprocess``; the agent builds its pipeline from
the manifest. So there is one definition of "what the model expects", and anyone with
the manifest can feed the model (see docs/PROTOCOL.md, "Input spec").

Image steps take HxWx3 uint8 BGR frames (what cv2.VideoCapture returns); sensor steps
take (channels, time) float windows. Every pipeline ends in a float32 array with a batch
axis of 1. OpenCV is imported only by image steps, so sensor-only installs need no cv2.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

Step = dict[str, Any]
Pipeline = Callable[[np.ndarray], np.ndarray]


class PreprocessError(ValueError):
    reason = "bad_input"


def _cv2():
    import cv2

    return cv2


def _gray(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2:
        return x
    if x.ndim != 3 or x.shape[2] not in (1, 3):
        raise PreprocessError(f"gray: expected HxWx3 or HxW, got {x.shape}")
    return x[:, :, 0] if x.shape[2] == 1 else _cv2().cvtColor(x, _cv2().COLOR_BGR2GRAY)


def _resize(x: np.ndarray, size: Sequence[int], interp: str = "area") -> np.ndarray:
    cv2 = _cv2()
    flag = {"area": cv2.INTER_AREA, "linear": cv2.INTER_LINEAR, "nearest": cv2.INTER_NEAREST}[interp]
    return cv2.resize(x, (int(size[0]), int(size[1])), interpolation=flag)


def _letterbox(x: np.ndarray, size: Sequence[int], fill: int = 0) -> np.ndarray:
    """Fit inside size (w, h) keeping aspect ratio; pad the rest with ``fill``."""
    cv2 = _cv2()
    w, h = int(size[0]), int(size[1])
    ih, iw = x.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    r = cv2.resize(x, (nw, nh), interpolation=cv2.INTER_AREA)
    out = np.full((h, w) + x.shape[2:], fill, dtype=x.dtype)
    top, left = (h - nh) // 2, (w - nw) // 2
    out[top:top + nh, left:left + nw] = r
    return out


def _denoise(x: np.ndarray, ksize: int = 3) -> np.ndarray:
    return _cv2().GaussianBlur(x, (int(ksize), int(ksize)), 0)


def _scale(x: np.ndarray, mul: float = 1.0, add: float = 0.0) -> np.ndarray:
    return x.astype(np.float32) * np.float32(mul) + np.float32(add)


def _chw(x: np.ndarray) -> np.ndarray:
    """HxW -> 1x1xHxW; HxWxC -> 1xCxHxW."""
    x = x.astype(np.float32, copy=False)
    if x.ndim == 2:
        return x[None, None]
    return np.transpose(x, (2, 0, 1))[None]


def _znorm(x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Per-channel zero mean, unit variance over time: (C, T) -> (C, T)."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise PreprocessError(f"znorm: expected (channels, time), got {x.shape}")
    m = x.mean(axis=1, keepdims=True)
    s = x.std(axis=1, keepdims=True)
    return (x - m) / (s + np.float32(eps))


def _resample(x: np.ndarray, length: int) -> np.ndarray:
    """Linear interpolation of each channel to ``length`` samples."""
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] < 2:
        raise PreprocessError(f"resample: expected (channels, time>=2), got {x.shape}")
    src = np.linspace(0.0, 1.0, x.shape[1], dtype=np.float64)
    dst = np.linspace(0.0, 1.0, int(length), dtype=np.float64)
    return np.stack([np.interp(dst, src, c) for c in x]).astype(np.float32)


def _log1p(x: np.ndarray) -> np.ndarray:
    """log(1 + x) of counts (x >= 0): counts span orders of magnitude; their logs train better."""
    x = np.asarray(x, dtype=np.float32)
    if (x < 0).any():
        raise PreprocessError("log1p: negative values (expected counts)")
    return np.log1p(x)


def _batch(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)[None]


STEPS: dict[str, Callable[..., np.ndarray]] = {
    "gray": _gray,
    "resize": _resize,
    "letterbox": _letterbox,
    "denoise": _denoise,
    "scale": _scale,
    "chw": _chw,
    "znorm": _znorm,
    "resample": _resample,
    "log1p": _log1p,
    "batch": _batch,
}


def build(steps: Sequence[Step]) -> Pipeline:
    """Compile a step list into a function raw sample -> float32 model input (batch of 1)."""
    compiled: list[tuple[Callable[..., np.ndarray], dict[str, Any]]] = []
    for i, step in enumerate(steps):
        if not isinstance(step, dict) or "op" not in step:
            raise PreprocessError(f"step {i}: expected {{'op': ..., params}}, got {step!r}")
        params = {k: v for k, v in step.items() if k != "op"}
        fn = STEPS.get(step["op"])
        if fn is None:
            raise PreprocessError(f"step {i}: unknown op {step['op']!r}; known: {sorted(STEPS)}")
        compiled.append((fn, params))

    def run(x: np.ndarray) -> np.ndarray:
        for fn, params in compiled:
            x = fn(x, **params)
        if not np.isfinite(x).all():
            raise PreprocessError("preprocessed input holds NaN or Inf")
        return np.ascontiguousarray(x, dtype=np.float32)

    return run
