"""Forecast samples from a series, and the truth each one earns once its horizon has passed.

Pure numpy: the edge agent issues forecasts and labels them itself, without torch or pandas.

Index convention (the one every forecast module uses): a forecast *issued at* step ``t`` has seen
the values up to and including ``t``; its input is ``values[t-L+1 : t+1]`` (the last L values) and its
truth is ``values[t+1 : t+H+1]`` (the next H). A forecast's truth exists once step ``t+H`` has been
observed, and not one sample earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ForecastSettings:
    """What a forecast task asks for; the task spec's ``[forecast]`` table maps onto this."""

    horizon: int  # H: steps forecast per issue
    lookback: int  # L: steps of history a forecast sees
    season: int  # steps of one season (168 for hourly data with a weekly rhythm); the naive baseline's lag
    interval: int  # seconds between two samples

    def __post_init__(self) -> None:
        for name in ("horizon", "lookback", "season", "interval"):
            v = getattr(self, name)
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < 1:
                raise ValueError(f"forecast.{name} must be an integer >= 1, got {v!r}")


def mask_zero_runs(values: np.ndarray, min_run: int) -> np.ndarray:
    """Runs of >= min_run zeros along axis 0 become NaN: a counter reading 0 for a day is down, not idle."""
    v = np.array(values, dtype=np.float64, copy=True)
    flat = v.reshape(v.shape[0], -1)
    for j in range(flat.shape[1]):
        zero = np.concatenate([[False], flat[:, j] == 0, [False]])
        edges = np.flatnonzero(np.diff(zero.astype(np.int8)))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            if stop - start >= min_run:
                flat[start:stop, j] = np.nan
    return v


def windows(values: np.ndarray, lookback: int, horizon: int, stride: int = 1,
            first: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (last L values -> next H values) sample of a 1-D series whose truth lies inside it.

    Returns (issued, x, y): issue steps (n,), inputs (n, L), truths (n, H). Issue steps run from
    ``first`` (default L - 1, the first step with a full lookback) to T - H - 1 every ``stride``.
    Missing values (NaN) are kept: the caller decides what an incomplete sample is worth.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"windows wants a 1-D series, got shape {v.shape}")
    lo = lookback - 1 if first is None else max(first, lookback - 1)
    issued = np.arange(lo, v.shape[0] - horizon, stride)
    if issued.size == 0:
        return issued, np.empty((0, lookback)), np.empty((0, horizon))
    view = np.lib.stride_tricks.sliding_window_view(v, lookback + horizon)
    rows = view[issued - lookback + 1]
    return issued, rows[:, :lookback].copy(), rows[:, lookback:].copy()


def realised(times: np.ndarray, values: np.ndarray, issued_at: int, horizon: int, interval: int,
             now: int) -> np.ndarray | None:
    """The truth of a forecast issued at ``issued_at`` (seconds), or None while its horizon has not passed.

    ``times`` (seconds, ascending) and ``values`` are the samples received so far; ``now`` is the time
    of the newest. Step k of the truth is the sample stamped ``issued_at + k * interval`` (k = 1..H);
    a step with no such sample (a dropped or missing reading) is NaN, never a neighbour's value.
    """
    last = issued_at + horizon * interval
    if now < last:
        return None
    t = np.asarray(times, dtype=np.int64)
    targets = issued_at + interval * np.arange(1, horizon + 1, dtype=np.int64)
    idx = np.searchsorted(t, targets)
    ok = idx < t.size
    ok[ok] = t[idx[ok]] == targets[ok]
    out = np.full(horizon, np.nan)
    out[ok] = np.asarray(values, dtype=np.float64)[idx[ok]]
    return out


def series_scale(values: np.ndarray, season: int) -> tuple[float, float]:
    """(level, naive error) of one series' history: its mean, and the mean |v[t] - v[t - season]|.

    The level scales a device's values so one model serves every device; the naive error is MASE's
    denominator (the in-sample error of the seasonal-naive forecast). NaN when there is too little data.
    """
    v = np.asarray(values, dtype=np.float64)
    level = float(np.nanmean(v)) if np.isfinite(v).any() else float("nan")
    d = np.abs(v[season:] - v[:-season]) if v.size > season else np.empty(0)
    err = float(np.nanmean(d)) if np.isfinite(d).any() else float("nan")
    return level, err


def calendar(times: np.ndarray) -> np.ndarray:
    """(n, 2) hour of day and day of week (Monday 0) of epoch seconds, UTC-naive wall-clock times."""
    t = np.asarray(times, dtype=np.int64)
    days = np.floor_divide(t, 86400)
    return np.stack([np.floor_divide(t % 86400, 3600), (days + 3) % 7], axis=1)  # 1970-01-01 was a Thursday


EDGE_CALENDAR = 9  # sin/cos of the hour, one-hot day of week


def edge_inputs(x: np.ndarray, level: np.ndarray, issued_at: np.ndarray) -> np.ndarray:
    """The edge forecaster's input rows (n, L + 9), float32: the last L values over the device's level, then
    the calendar of the issue step. The cloud builds its training rows and the agent its live rows here,
    so the two cannot drift apart."""
    cal = calendar(issued_at)
    ang = 2 * np.pi * cal[:, 0] / 24
    dow = np.eye(7)[cal[:, 1]]
    scaled = np.asarray(x, np.float64) / np.asarray(level, np.float64)[:, None]
    return np.concatenate([scaled, np.sin(ang)[:, None], np.cos(ang)[:, None], dow], axis=1).astype(np.float32)
