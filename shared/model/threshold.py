"""Alert threshold of an anomaly task, set on held-out normal scores for a target false-alarm rate.

numpy only: the edge agent uses it too. The threshold is the split-conformal quantile of the
held-out normal scores: the ceil((n + 1)(1 - rate))-th smallest of n. A new normal window drawn
like them exceeds it with probability at most ``rate`` (and at least ``rate - 1/(n + 1)``), so the
measured false-alarm rate is the requested one or a little under: conservative, never over in
expectation. Below ``1/rate - 1`` normals no order statistic is high enough; the largest score is
used and ``Threshold.guaranteed`` says the rate is not promised.

That bound holds on average over calibration sets; one set's threshold lands off by about
sqrt(rate / n) in rate. ``normals_for`` says how many normals keep it within a relative band
(within +-50 % at 3 sigma: about 36 / rate, 3,564 normals for 1 %, 684 for 5 %).

Scores are "higher is less normal"; a score strictly above the threshold alerts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

NORMAL, ESCALATE, ALERT = 0, 1, 2


class ThresholdError(ValueError):
    """Scores or rates that no threshold can be set from."""


@dataclass(frozen=True)
class Threshold:
    value: float  # scores above it alert
    rate: float  # the false-alarm rate it was set for
    n: int  # held-out normal scores it was set on
    guaranteed: bool  # False: too few normals for the rate; the largest score was used


def min_normals(rate: float) -> int:
    """Held-out normals needed for the conformal quantile at ``rate`` to exist."""
    return math.ceil(1.0 / rate - 1.0)


def normals_for(rate: float, rel: float = 0.5, z: float = 3.0) -> int:
    """Held-out normals for one calibration's false-alarm rate to land within ``rel`` of ``rate`` at ``z`` sigma
    (the exceedance of a conformal quantile is Beta-distributed, sd ~ sqrt(rate (1 - rate) / n))."""
    return math.ceil(z * z * (1.0 - rate) / (rel * rel * rate))


def calibrate(normal_scores: np.ndarray, rate: float) -> Threshold:
    """The conservative threshold for false-alarm rate ``rate`` from held-out normal scores."""
    s = np.asarray(normal_scores, np.float64).ravel()
    if not 0.0 < rate < 1.0:
        raise ThresholdError(f"false-alarm rate {rate!r} is not in (0, 1)")
    if s.size == 0:
        raise ThresholdError("no held-out normal scores to set a threshold on")
    if not np.isfinite(s).all():
        raise ThresholdError(f"{int((~np.isfinite(s)).sum())} held-out scores are NaN or infinite")
    n = s.size
    k = math.ceil((n + 1) * (1.0 - rate))  # 1-based rank
    guaranteed = k <= n
    value = float(np.partition(s, min(k, n) - 1)[min(k, n) - 1])
    return Threshold(value, float(rate), n, guaranteed)


def decide(scores: np.ndarray, alert: float, escalate: float | None = None) -> np.ndarray:
    """Per score: ALERT above ``alert``, ESCALATE above ``escalate`` (the band below it), else NORMAL.
    A NaN score escalates: the cloud should see a window the edge cannot score."""
    s = np.asarray(scores, np.float64)
    out = np.full(s.shape, NORMAL, np.int8)
    if escalate is not None:
        out[s > escalate] = ESCALATE
    out[s > alert] = ALERT
    out[np.isnan(s)] = ESCALATE
    return out


def false_alarm_rate(normal_scores: np.ndarray, threshold: float) -> float:
    s = np.asarray(normal_scores, np.float64)
    return float((s > threshold).mean()) if s.size else float("nan")
