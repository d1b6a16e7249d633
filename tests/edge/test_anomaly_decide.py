"""An anomaly task's decision on the edge: alert above the threshold, escalate raw in the band, count the rest."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.anomaly_decide import AnomalyDecider
from edge_agent.decide import TokenBucket
from shared.model.threshold import calibrate


def test_alert_above_the_threshold_band_escalates_below_it_normal_acts_alone():
    d = AnomalyDecider(alert=1.0, escalate=0.6)
    got = [(x.alert, x.escalate, x.reason) for x in map(d.decide, [0.2, 0.6, 0.61, 1.0, 1.01, 7.0])]
    assert got == [(False, False, "normal"), (False, False, "normal"), (False, True, "band"),
                   (False, True, "band"), (True, True, "alert"), (True, True, "alert")]
    assert d.counters.snapshot() == {"anomaly.normal": 2, "anomaly.band": 2, "anomaly.alert": 2}
    assert d.decide(np.array([[1.5]], np.float32)).alert  # the graph's (1, 1) score output as it comes


def test_a_score_that_is_not_finite_is_counted_and_escalated_never_raised():
    d = AnomalyDecider(alert=1.0, escalate=0.6)
    for bad in (float("nan"), float("inf")):
        x = d.decide(bad)
        assert not x.alert and x.escalate and x.reason == "bad_score"
    assert d.counters.get("anomaly.bad_score") == 2


def test_the_band_is_rate_limited_and_an_alert_is_not():
    t = [0.0]
    d = AnomalyDecider(alert=1.0, escalate=0.5, bucket=TokenBucket(rate=1.0, burst=2, clock=lambda: t[0]))
    reasons = [d.decide(0.7).reason for _ in range(4)]
    assert reasons == ["band", "band", "rate_limited", "rate_limited"]
    assert all(d.decide(2.0).alert for _ in range(5))  # the bucket is empty; alerts still go out
    t[0] += 1.0
    assert d.decide(0.7).reason == "band"
    assert d.counters.get("anomaly.rate_limited") == 2


def test_thresholds_from_calibration_and_bad_thresholds_refused():
    normals = np.random.default_rng(0).gamma(2.0, 1.0, 5000)
    d = AnomalyDecider.from_thresholds(calibrate(normals, 0.01), calibrate(normals, 0.05))
    verdicts = [d.decide(s).reason for s in normals]
    assert verdicts.count("alert") <= 0.01 * len(normals)  # the calibration set itself: at most the rate
    assert 0.02 * len(normals) < verdicts.count("band") <= 0.04 * len(normals)  # 5 % minus 1 %
    with pytest.raises(ValueError, match="escalate <= alert"):
        AnomalyDecider(alert=1.0, escalate=2.0)
    with pytest.raises(ValueError, match="finite"):
        AnomalyDecider(alert=float("nan"))
