"""Drift detection per device from what devices already report: no labels, numpy only.

Nightfall shows in a device's stream before any label arrives: the edge grows less sure of its
answers (top-1 confidence falls, escalations rise) and its feature vectors move away from where the
day put them. :class:`DriftDetector` watches one device's stream:

1. **Reference**: its first ``reference`` samples (taken to be in-domain) fix, per channel, the
   reference mean and the null distribution of a window's mean.
2. **Windows**: every ``window`` following samples (non-overlapping) are one two-sample test per
   channel against the reference:

   - ``confidence``: the window's mean top-1 confidence;
   - ``features`` (when feature vectors are given): how far the window's mean feature vector is from
     the reference's, as the squared length of their difference over the reference's top
     ``components`` principal directions, each scaled to unit variance (a mean shift along any of
     them counts; correlated ReLU units count once);
   - ``escalation`` (when escalation flags are given): the window's escalation rate.

   Confidence and escalation are tested both ways (night lowers the confidence; morning, against a
   night reference, raises it), features one way (a distance). A window alarms when any channel
   leaves its band: the ``alpha / t`` tail quantiles (t: the tails tested, Bonferroni) of its null
   distribution, bootstrapped from the reference samples (windows drawn with replacement, so a
   skewed confidence distribution keeps its skew) plus the reference mean's own sampling error
   (normal, variance s^2 / reference).

**Stated false-alarm rate**: at most ``alpha`` per window (default 1e-3 per window of 50 samples:
at 10 frames a second, one false alarm in about 14 hours of a device's stream) while the stream stays
i.i.d. in its reference domain. Measured on the synthetic streams of tests/shared/test_drift.py:
8 alarms in 10,000 windows at alpha 1e-3, 19 in 3,000 at 1e-2. **Detection delay**: a shift the
size of the camera's nightfall alarms at the end of the first window wholly after it, at most
``2 * window`` samples later (63 samples for a shift 37 samples into a window of 50, in every
seed of the test; on the real camera stream, the first night window).

After an alarm the detector stops testing (``drifted``) until :meth:`DriftDetector.rebase`, which
takes the next ``reference`` samples as the new domain's reference (then morning is a drift too),
or :meth:`DriftDetector.rearm` (a dismissed alarm: same reference).
:class:`FleetDrift` keeps one detector per device. Bad input (a confidence outside [0, 1], a
non-finite or misshapen feature vector, a channel that comes and goes) is refused with
:class:`BadDriftSample` and counted; it never reaches the statistics.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

CHANNELS = ("confidence", "features", "escalation")
_TAILS = 5  # confidence and escalation both ways, features one way


class BadDriftSample(ValueError):
    """A sample the detector refuses (counted in ``rejected``); the message says why."""


@dataclass(frozen=True)
class Alarm:
    channel: str  # the first channel over its threshold (largest excess in threshold units)
    statistic: float  # the window's mean minus the reference's
    threshold: float  # the band's edge it crossed
    sample: int  # samples seen by the detector when it fired (the reference included)
    channels: tuple[str, ...]  # every channel over its threshold


@dataclass(frozen=True)
class _Null:
    ref_mean: float  # scalar channels: the reference's mean, subtracted from a window's
    low: float  # the band of the window statistic under no drift
    high: float


def _chunks(boot: int, per: int):
    step = max(1, 2_000_000 // per)  # bounded memory: ~16 MB of draws at a time
    for i in range(0, boot, step):
        yield i, min(step, boot - i)


def _scalar_null(values: np.ndarray, window: int, tail: float, boot: int, rng: np.random.Generator) -> _Null:
    """The ``tail`` and ``1 - tail`` quantiles of (window mean - reference mean): window means resampled
    from the reference, plus the reference mean's own error (normal, variance s^2 / n)."""
    n = len(values)
    means = np.empty(boot)
    for i, k in _chunks(boot, window):
        means[i:i + k] = values[rng.integers(0, n, (k, window))].mean(1)
    ref_mean = float(values.mean())
    diffs = means - ref_mean + rng.normal(0.0, float(values.std()) / math.sqrt(n), boot)
    low, high = np.quantile(diffs, [tail, 1.0 - tail])
    return _Null(ref_mean, float(low), float(high))


def _whitener(feats: np.ndarray, components: int) -> tuple[np.ndarray, np.ndarray]:
    """(mean, projection) onto the reference's top principal components, each scaled to unit variance:
    correlated ReLU units become a few independent directions a window mean can be measured along."""
    mean = feats.mean(0)
    vals, vecs = np.linalg.eigh(np.cov(feats - mean, rowvar=False, bias=True).reshape(feats.shape[1], -1))
    order = np.argsort(vals)[::-1]
    keep = [i for i in order[:components] if vals[i] > 1e-9 * max(float(vals.max()), 1e-30)]
    if not keep:
        raise ValueError("the reference features do not vary: nothing to measure a shift along")
    return mean, vecs[:, keep] / np.sqrt(vals[keep])


def _shift_null(z: np.ndarray, window: int, tail: float, boot: int, rng: np.random.Generator) -> _Null:
    """The ``1 - tail`` quantile of |window mean|^2 in whitened space: window means resampled from the
    reference plus the reference mean's error (whitened: variance 1 / n per component)."""
    n, k = z.shape
    stat = np.empty(boot)
    for i, b in _chunks(boot, window * k):
        m = z[rng.integers(0, n, (b, window))].mean(1) + rng.normal(0.0, 1.0 / math.sqrt(n), (b, k))
        stat[i:i + b] = (m ** 2).sum(1)
    return _Null(0.0, -math.inf, float(np.quantile(stat, 1.0 - tail)))


class DriftDetector:
    """One device's stream, tested window by window against its reference (see the module's docstring)."""

    def __init__(self, window: int = 50, reference: int = 500, alpha: float = 1e-3, boot: int = 100_000,
                 components: int = 8, seed: int = 0) -> None:
        if window < 2 or reference < 2 * window:
            raise ValueError(f"need window >= 2 and reference >= 2 * window, got {window} and {reference}")
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1), got {alpha}")
        if boot * alpha / _TAILS < 10:
            raise ValueError(f"boot={boot} draws leave under 10 beyond each alpha={alpha} quantile: raise boot")
        self.window, self.reference, self.alpha, self.boot = window, reference, alpha, boot
        self.components = components
        self._rng = np.random.default_rng(seed)
        self.rejected = 0
        self.windows_tested = 0
        self.samples = 0
        self.alarm: Alarm | None = None
        self.rebase()

    @property
    def state(self) -> str:
        """calibrating (collecting the reference), watching, or drifted (an alarm, until rebase)."""
        return "drifted" if self.alarm is not None else "watching" if self._nulls else "calibrating"

    def rebase(self) -> None:
        """Forget the reference: the next ``reference`` samples define the domain (after an adaptation)."""
        self.alarm = None
        self._buf: dict[str, list] = {"confidence": [], "features": [], "escalation": []}
        self._has: tuple[bool, bool] | None = None  # features given, escalation given: fixed by the first sample
        self._nulls: dict[str, _Null] = {}
        self._feat_mean = self._feat_proj = None

    def rearm(self) -> None:
        """Dismiss an alarm and go on testing against the same reference (a false alarm, say)."""
        self.alarm = None
        self._clear()

    def update(self, confidence: float, features: np.ndarray | None = None,
               escalated: bool | None = None) -> Alarm | None:
        """One sample; an :class:`Alarm` when it completes a window that drifted, else None."""
        conf, feat = self._check(confidence, features, escalated)
        self.samples += 1
        if self.alarm is not None:
            return None  # drifted: nothing to test until rearm or rebase
        self._buf["confidence"].append(conf)
        if feat is not None:
            self._buf["features"].append(feat)
        if escalated is not None:
            self._buf["escalation"].append(1.0 if escalated else 0.0)
        if not self._nulls:
            if len(self._buf["confidence"]) >= self.reference:
                self._calibrate()
            return None
        if len(self._buf["confidence"]) >= self.window:
            return self._test()
        return None

    def update_many(self, confidence: np.ndarray, features: np.ndarray | None = None,
                    escalated: np.ndarray | None = None) -> list[Alarm]:
        out = []
        for i in range(len(confidence)):
            a = self.update(float(confidence[i]), None if features is None else features[i],
                            None if escalated is None else bool(escalated[i]))
            if a is not None:
                out.append(a)
        return out

    def _check(self, confidence, features, escalated) -> tuple[float, np.ndarray | None]:
        try:
            conf = float(confidence)
            if not 0.0 <= conf <= 1.0:  # NaN fails this too
                raise BadDriftSample(f"confidence {confidence!r} is not in [0, 1]")
            has = (features is not None, escalated is not None)
            if self._has is not None and has != self._has:
                raise BadDriftSample(f"channels changed: features/escalation given {has}, the reference had "
                                     f"{self._has}")
            feat = None
            if features is not None:
                feat = np.asarray(features, np.float64).ravel()
                want = self._feat_mean.shape if self._feat_mean is not None else (
                    self._buf["features"][0].shape if self._buf["features"] else None)
                if feat.size == 0 or (want is not None and feat.shape != want):
                    raise BadDriftSample(f"features of shape {feat.shape}, expected {want}")
                if not np.isfinite(feat).all():
                    raise BadDriftSample("features not finite")
        except BadDriftSample:
            self.rejected += 1
            raise
        except (TypeError, ValueError) as exc:
            self.rejected += 1
            raise BadDriftSample(f"unreadable sample: {exc}") from None
        self._has = has
        return conf, feat

    def _calibrate(self) -> None:
        ref = self._take(self.reference)
        tail = self.alpha / sum(1 if ch == "features" else 2 for ch in ref)  # Bonferroni over every tail
        self._nulls = {}
        if "features" in ref:
            feats = ref.pop("features")
            self._feat_mean, self._feat_proj = _whitener(feats, self.components)
            z = (feats - self._feat_mean) @ self._feat_proj
            self._nulls["features"] = _shift_null(z, self.window, tail, self.boot, self._rng)
        for ch, v in ref.items():
            self._nulls[ch] = _scalar_null(v, self.window, tail, self.boot, self._rng)

    def _take(self, n: int) -> dict[str, np.ndarray]:
        out = {"confidence": np.asarray(self._buf["confidence"][:n])}
        if self._buf["features"]:
            out["features"] = np.stack(self._buf["features"][:n])
        if self._buf["escalation"]:
            out["escalation"] = np.asarray(self._buf["escalation"][:n])
        for v in self._buf.values():
            del v[:n]
        return out

    def _clear(self) -> None:
        for v in self._buf.values():
            v.clear()

    def _test(self) -> Alarm | None:
        w = self._take(self.window)
        self.windows_tested += 1
        stats = {ch: float(v.mean()) - self._nulls[ch].ref_mean for ch, v in w.items() if ch != "features"}
        if "features" in w:
            stats["features"] = float((((w["features"] - self._feat_mean) @ self._feat_proj).mean(0) ** 2).sum())
        # How far past its band each channel is, in units of the band's half on that side.
        excess = {ch: d / n.high if d > n.high else d / n.low if d < n.low else 0.0
                  for (ch, d), n in ((item, self._nulls[item[0]]) for item in stats.items())}
        over = [ch for ch, e in excess.items() if e > 0.0]
        if not over:
            return None
        worst = max(over, key=excess.__getitem__)
        n = self._nulls[worst]
        self.alarm = Alarm(worst, stats[worst], n.high if stats[worst] > n.high else n.low, self.samples,
                           tuple(over))
        return self.alarm


class FleetDrift:
    """One :class:`DriftDetector` per device, made on the device's first sample (at most ``max_devices``:
    a stream of made-up device ids is refused, not remembered)."""

    def __init__(self, max_devices: int = 10_000, **detector_args) -> None:
        self.max_devices = max_devices
        self.detector_args = detector_args
        self.detectors: dict[str, DriftDetector] = {}
        self.rejected = 0

    def observe(self, device: str, confidence: float, features: np.ndarray | None = None,
                escalated: bool | None = None) -> Alarm | None:
        det = self.detectors.get(device)
        if det is None:
            if len(self.detectors) >= self.max_devices:
                self.rejected += 1
                raise BadDriftSample(f"more than {self.max_devices} devices: {device!r} not tracked")
            det = self.detectors[device] = DriftDetector(**self.detector_args)
        try:
            return det.update(confidence, features, escalated)
        except BadDriftSample:
            self.rejected += 1
            raise

    def drifted(self) -> list[str]:
        return sorted(d for d, det in self.detectors.items() if det.state == "drifted")
