"""The drift detector: quiet at the false-alarm rate it states on an unshifted stream, fires within two
windows of a nightfall-sized shift, refuses bad samples with a count, one detector per device.

Streams are synthetic and seeded (numpy's generators give the same numbers on every CPU): top-1
confidences skewed towards 1 as an edge model's are, ReLU feature vectors, escalation = confidence
below 0.9."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.drift import BadDriftSample, DriftDetector, FleetDrift

W, REF = 50, 500


def stream(n: int, rng: np.random.Generator, *, night: bool = False, dim: int = 16):
    """Day: confident (mean top-1 0.93), features around the day's mean. Night: less confident (mean
    0.82) and smaller activations (a dimmer input: each unit's mean moves by 0.2 to 0.7 of its day
    standard deviation). On the real camera stream the edge's features move further
    (tests/cloud/test_drift_camera.py)."""
    conf = 1.0 - 0.6 * rng.beta(1.2 if night else 0.5, 3.0 if night else 4.0, n)
    centre = np.linspace(-0.5, 1.5, dim) * (0.5 if night else 1.0)
    feats = np.maximum(0.0, centre + rng.normal(0.0, 1.0, (n, dim)))
    return conf, feats, conf < 0.9


def false_alarms(det: DriftDetector, conf, feats, esc) -> int:
    alarms = 0
    for i in range(len(conf)):
        if det.update(float(conf[i]), None if feats is None else feats[i], None if esc is None else bool(esc[i])):
            alarms += 1
            det.rearm()
    return alarms


@pytest.mark.parametrize("alpha, seeds, windows", [(1e-2, 12, 250), (1e-3, 8, 1250)])
def test_stays_quiet_on_the_unshifted_stream_at_its_stated_rate(alpha, seeds, windows):
    alarms = tested = 0
    for s in range(seeds):
        rng = np.random.default_rng(100 + s)
        conf, feats, esc = stream(REF + W * windows, rng)
        det = DriftDetector(window=W, reference=REF, alpha=alpha, seed=s)
        alarms += false_alarms(det, conf, feats, esc)
        tested += det.windows_tested
    stated = alpha * tested  # the rate the detector states: alpha per window
    # Three standard deviations of Poisson slack over the stated rate: a detector at twice its stated
    # rate fails this (at alpha 1e-2 surely, at 1e-3 most of the time).
    assert tested == seeds * windows
    assert alarms <= stated + 3 * np.sqrt(stated), (alarms, stated)


def test_the_confidence_channel_alone_keeps_its_rate():
    alarms = tested = 0
    for s in range(10):
        conf, _, _ = stream(REF + W * 1000, np.random.default_rng(500 + s))
        det = DriftDetector(window=W, reference=REF, alpha=1e-2, seed=s)
        alarms += false_alarms(det, conf, None, None)
        tested += det.windows_tested
    stated = 1e-2 * tested
    assert alarms <= stated + 3 * np.sqrt(stated), (alarms, tested)


@pytest.mark.parametrize("channels", ["all", "confidence", "features", "escalation"])
def test_fires_within_two_windows_of_a_nightfall_sized_shift(channels):
    delays = []
    for s in range(20):
        rng = np.random.default_rng(s)
        day, night = stream(REF + 137, rng), stream(400, rng, night=True)
        conf, feats, esc = (np.concatenate([a, b]) for a, b in zip(day, night, strict=True))
        if channels == "features":
            conf = np.concatenate([day[0], stream(400, rng)[0]])  # confidence unshifted: features must tell
        det = DriftDetector(window=W, reference=REF, seed=s)
        args = {"all": (feats, esc), "confidence": (None, None), "features": (feats, None),
                "escalation": (None, esc)}[channels]
        if channels == "escalation":
            conf = np.concatenate([day[0], stream(400, rng)[0]])
        fired = det.update_many(conf, *args)
        assert fired, f"seed {s}: no alarm on {channels}"
        delays.append(fired[0].sample - (REF + 137))
        assert det.state == "drifted"
    # The shift starts mid-window; the first window wholly after it ends 63 samples later.
    assert max(delays) <= 2 * W, delays
    assert min(delays) > 0, delays


def test_the_unshifted_stream_stays_watching_and_rebase_makes_morning_a_drift():
    rng = np.random.default_rng(7)
    night = stream(REF + 200, rng, night=True)
    det = DriftDetector(window=W, reference=REF, seed=1)
    assert det.state == "calibrating"
    det.update_many(*night)
    assert det.state == "watching"  # a night reference: night is not a drift
    day = stream(300, rng)
    fired = det.update_many(*day)
    assert fired and fired[0].channels  # morning, against the night's reference
    det.rebase()
    assert det.state == "calibrating" and det.alarm is None


@pytest.mark.parametrize("bad", [
    {"confidence": float("nan")}, {"confidence": 1.5}, {"confidence": "high"},
    {"features": np.full(16, np.inf)}, {"features": np.zeros(9)}, {"features": None},
])
def test_bad_samples_are_refused_and_counted_and_change_nothing(bad):
    rng = np.random.default_rng(3)
    conf, feats, esc = stream(REF + W, rng)
    det = DriftDetector(window=W, reference=REF)
    det.update_many(conf[:REF + 10], feats[:REF + 10], esc[:REF + 10])
    before = (det.samples, det.windows_tested, len(det._buf["confidence"]))
    sample = {"confidence": 0.95, "features": feats[0], "escalated": False, **bad}
    with pytest.raises(BadDriftSample):
        det.update(**sample)
    assert det.rejected == 1
    assert (det.samples, det.windows_tested, len(det._buf["confidence"])) == before
    assert det.update(0.95, feats[1], False) is None  # the stream goes on


def test_one_detector_per_device_and_made_up_devices_are_refused():
    rng = np.random.default_rng(11)
    fleet = FleetDrift(max_devices=2, window=W, reference=REF)
    day_a, day_b = stream(REF + 300, rng), stream(REF, rng)
    night_b = stream(300, rng, night=True)
    for i in range(REF + 300):
        fleet.observe("cam-a", day_a[0][i], day_a[1][i], bool(day_a[2][i]))
    b = [np.concatenate([x, y]) for x, y in zip(day_b, night_b, strict=True)]
    for i in range(len(b[0])):
        fleet.observe("cam-b", b[0][i], b[1][i], bool(b[2][i]))
    assert fleet.drifted() == ["cam-b"]
    with pytest.raises(BadDriftSample):
        fleet.observe("cam-c", 0.9)
    assert fleet.rejected == 1 and set(fleet.detectors) == {"cam-a", "cam-b"}


def test_settings_that_cannot_hold_their_rate_are_refused():
    with pytest.raises(ValueError):
        DriftDetector(window=50, reference=60)
    with pytest.raises(ValueError):
        DriftDetector(alpha=1e-4, boot=10_000)  # one draw beyond the quantile: no estimate
