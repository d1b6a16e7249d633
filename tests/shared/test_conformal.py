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
