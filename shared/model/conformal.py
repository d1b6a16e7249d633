"""Split-conformal intervals around any point forecaster, one width per horizon step (pure numpy).

Calibrate on a hold-out the forecaster never trained on: the interval at nominal coverage c is the
point forecast +- the ceil((n + 1) c)-th smallest of the n hold-out absolute residuals of that step.
If the test residuals are exchangeable with the hold-out ones, coverage is at least c (and below
c + 1/(n + 1)). Residuals may be divided by a per-sample scale (a device's level) first, so one
calibration serves devices of any size, a new device's included.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Conformal:
    coverage: float
    width: np.ndarray  # (H,) half-width per step, in scaled units
    n: np.ndarray  # (H,) hold-out residuals behind each step

    def interval(self, pred: np.ndarray, scale: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(lo, hi), each shaped like pred (n, H); ``scale`` (n,) is the same per-sample scale as at calibration."""
        half = self.width[None, :] * (1.0 if scale is None else np.asarray(scale, np.float64)[:, None])
        return pred - half, pred + half


def calibrate(y_true: np.ndarray, y_pred: np.ndarray, coverage: float, scale: np.ndarray | None = None) -> Conformal:
    """Per-step conformal half-widths from hold-out truths and forecasts (n, H); NaN truths are skipped."""
    if not 0 < coverage < 1:
        raise ValueError(f"coverage must lie in (0, 1), got {coverage}")
    r = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))
    if scale is not None:
        r = r / np.asarray(scale, np.float64)[:, None]
    width, n = np.empty(r.shape[1]), np.empty(r.shape[1], np.int64)
    for h in range(r.shape[1]):
        col = np.sort(r[np.isfinite(r[:, h]), h])
        n[h] = col.size
        k = int(np.ceil((col.size + 1) * coverage))
        if k > col.size:
            raise ValueError(f"step {h + 1}: {col.size} hold-out residuals are too few for coverage {coverage}")
        width[h] = col[k - 1]
    return Conformal(float(coverage), width, n)


def coverage(y_true: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> float:
    """Share of the finite truths that fall inside [lo, hi]."""
    y = np.asarray(y_true, np.float64)
    ok = np.isfinite(y)
    return float(((y >= lo) & (y <= hi))[ok].mean())


def rolling_widths(issued_at: np.ndarray, y_true: np.ndarray, y_pred: np.ndarray, coverage: float, *,
                   horizon_s: int, window_s: int, scale: np.ndarray | None = None,
                   min_n: int = 50) -> np.ndarray:
    """Per-forecast half-widths (n, H) from the forecasts whose truth had arrived when it was issued.

    A forecaster's truth arrives by itself, so its intervals can follow the errors it makes now rather
    than those of a hold-out: a forecast issued at u takes the conformal width of the residuals of the
    forecasts issued in (u - window_s - horizon_s, u - horizon_s], the ones whose last step had been read
    by u. NaN (use the hold-out's widths) where fewer than ``min_n`` such residuals exist for a step.
    """
    t = np.asarray(issued_at, np.int64)
    r = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))
    if scale is not None:
        r = r / np.asarray(scale, np.float64)[:, None]
    out = np.full(r.shape, np.nan)
    for u in np.unique(t):
        past = (t + horizon_s <= u) & (t + horizon_s + window_s > u)
        if not past.any():
            continue
        here = t == u
        for h in range(r.shape[1]):
            col = np.sort(r[past, h][np.isfinite(r[past, h])])
            k = int(np.ceil((col.size + 1) * coverage))
            if col.size >= min_n and k <= col.size:
                out[here, h] = col[k - 1]
    return out
