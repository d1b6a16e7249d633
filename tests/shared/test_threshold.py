"""The anomaly threshold: set on held-out normal scores, it holds the requested false-alarm rate on fresh normals."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.threshold import (
    ALERT,
    ESCALATE,
    NORMAL,
    ThresholdError,
    calibrate,
    decide,
    false_alarm_rate,
    min_normals,
    normals_for,
)


@pytest.mark.parametrize("rate", [0.01, 0.05])
def test_the_threshold_hits_the_requested_false_alarm_rate_on_fresh_normals(rate):
    # numpy's Generator draws the same numbers on every CPU, so the figures below are fixed; the
    # margins are those of the method (mean within 1/(n+1) under the rate), not of these draws.
    rng = np.random.default_rng(7)
    n, fresh = normals_for(rate), 100_000
    rates = []
    for _ in range(30):
        t = calibrate(rng.gamma(2.0, 1.5, n), rate)
        assert t.guaranteed and t.n == n and t.rate == rate
        rates.append(false_alarm_rate(rng.gamma(2.0, 1.5, fresh), t.value))
    mean = float(np.mean(rates))
    assert rate - 1.0 / (n + 1) - 0.1 * rate <= mean <= rate + 0.1 * rate, (rate, mean)  # at or just under
    assert max(rates) < 1.5 * rate and min(rates) > 0.5 * rate, rates  # with normals_for(rate): within +-50 %


def test_few_normals_leave_one_calibration_far_off_the_rate():
    # why normals_for exists: at 1 % on 300 normals one calibration misses by more than half now and then
    rng = np.random.default_rng(3)
    rates = [false_alarm_rate(rng.normal(size=50_000), calibrate(rng.normal(size=300), 0.01).value)
             for _ in range(60)]
    assert normals_for(0.01) == 3564 and normals_for(0.05) == 684
    assert min(rates) < 0.005 or max(rates) > 0.015


def test_the_threshold_is_the_conformal_order_statistic():
    s = np.arange(1, 100, dtype=float)  # 99 scores: rank ceil(100 * 0.95) = 95
    t = calibrate(np.random.default_rng(0).permutation(s), 0.05)
    assert t.value == 95.0 and false_alarm_rate(s, t.value) == pytest.approx(4 / 99)


def test_too_few_normals_use_the_largest_and_say_so():
    assert min_normals(0.01) == 99
    t = calibrate(np.linspace(0, 1, 50), 0.01)
    assert t.value == 1.0 and not t.guaranteed
    assert calibrate(np.linspace(0, 1, 99), 0.01).guaranteed


@pytest.mark.parametrize("scores,rate,needle", [
    ([], 0.01, "no held-out normal scores"),
    ([1.0, float("nan")], 0.01, "1 held-out scores are NaN"),
    ([1.0, 2.0], 0.0, "not in (0, 1)"),
    ([1.0, 2.0], 1.0, "not in (0, 1)"),
])
def test_bad_scores_or_rates_are_refused(scores, rate, needle):
    with pytest.raises(ThresholdError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        calibrate(np.array(scores), rate)


def test_decide_alerts_above_escalates_in_the_band_and_on_nan():
    out = decide(np.array([0.1, 0.5, 0.7, 1.0, 1.5, np.nan]), alert=1.0, escalate=0.6)
    assert out.tolist() == [NORMAL, NORMAL, ESCALATE, ESCALATE, ALERT, ESCALATE]
    assert decide(np.array([0.7, 1.5]), alert=1.0).tolist() == [NORMAL, ALERT]
