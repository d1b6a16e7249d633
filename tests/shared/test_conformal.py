"""Split-conformal intervals: coverage holds on data the calibration never saw."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.conformal import calibrate, coverage


def _data(rng, n, h=6):
    """A deliberately imperfect forecaster: truth = pred + heavy-tailed noise growing with the step."""
    pred = rng.normal(size=(n, h)) * 5
    scale = rng.uniform(1, 50, size=n)  # devices of very different sizes
    noise = rng.standard_t(3, size=(n, h)) * (1 + np.arange(h))[None, :]
    return pred * scale[:, None], (pred + noise) * scale[:, None], scale


@pytest.mark.parametrize("nominal", [0.5, 0.8, 0.95])
def test_coverage_holds_out_of_sample(nominal):
    rng = np.random.default_rng(7)
    pred_c, true_c, s_c = _data(rng, 2000)
    pred_t, true_t, s_t = _data(rng, 20000)
    cal = calibrate(true_c, pred_c, nominal, scale=s_c)
    lo, hi = cal.interval(pred_t, scale=s_t)
    # 2,000 hold-out residuals: the realised coverage of the test set is within ~2 binomial sds of nominal
    assert abs(coverage(true_t, lo, hi) - nominal) < 0.025
    assert np.all(np.diff(cal.width) > 0)  # later steps are noisier here, and get wider intervals
    # without the scale the intervals are wrong per device: too wide for small ones, too narrow for big ones
    plain = calibrate(true_c, pred_c, nominal)
    lo_p, hi_p = plain.interval(pred_t)
    small = s_t < 10
    assert coverage(true_t[small], lo_p[small], hi_p[small]) > coverage(true_t[small], lo[small], hi[small]) + 0.03


def test_missing_truths_skipped_and_too_few_refused():
    y = np.array([[1.0, np.nan], [2.0, 3.0], [4.0, np.nan]])
    cal = calibrate(y, np.zeros_like(y), 0.5)
    assert cal.n.tolist() == [3, 1] and cal.width.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="too few"):
        calibrate(y, np.zeros_like(y), 0.9)
    with pytest.raises(ValueError, match="coverage"):
        calibrate(y, np.zeros_like(y), 1.0)
    assert coverage(np.array([[1.0, np.nan]]), np.zeros((1, 2)), np.ones((1, 2))) == 1.0


def test_rolling_widths_follow_a_change_a_holdout_missed():
    """Noise doubles after day 100: the hold-out's widths under-cover from then on, the rolling ones
    (built only from forecasts whose truth had arrived) come back to nominal once the window has refilled."""
    from shared.model.conformal import rolling_widths

    rng = np.random.default_rng(3)
    day, devices, h = 86400, 20, 4
    t = np.repeat(np.arange(200) * day, devices)
    sd = np.where(t < 100 * day, 1.0, 2.0)[:, None]
    pred = rng.normal(size=(t.size, h))
    true = pred + rng.normal(size=(t.size, h)) * sd
    cal = calibrate(true[t < 50 * day], pred[t < 50 * day], 0.8)
    w = rolling_widths(t, true, pred, 0.8, horizon_s=day, window_s=14 * day)
    # at day 2 the truths of days 0 and 1 have arrived (40 residuals, min 50), at day 3 those of days 0-2
    assert np.isnan(w[t < 3 * day]).all() and np.isfinite(w[t == 3 * day]).all()
    later = t >= 120 * day
    lo_r, hi_r = pred[later] - w[later], pred[later] + w[later]
    lo_c, hi_c = cal.interval(pred[later])
    assert abs(coverage(true[later], lo_r, hi_r) - 0.8) < 0.03
    assert coverage(true[later], lo_c, hi_c) < 0.6
    # no peeking: a forecast's width depends only on forecasts whose horizon ended by its issue time
    true2 = true.copy()
    true2[t == 150 * day] += 100.0
    w2 = rolling_widths(t, true2, pred, 0.8, horizon_s=day, window_s=14 * day)
    assert np.array_equal(w2[t <= 150 * day], w[t <= 150 * day], equal_nan=True)
    assert not np.array_equal(w2[t == 151 * day], w[t == 151 * day])
