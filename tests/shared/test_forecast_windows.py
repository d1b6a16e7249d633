"""Forecast windows and realised truth: the index edges, where off-by-one errors live."""

from __future__ import annotations

import numpy as np
import pytest

from shared.model.forecast_windows import (
    ForecastSettings,
    calendar,
    mask_zero_runs,
    realised,
    series_scale,
    windows,
)

V = np.arange(10, dtype=float) * 10  # value at step i is 10 * i: every check below reads the step back


def test_first_and_last_window():
    issued, x, y = windows(V, lookback=3, horizon=2)
    assert issued[0] == 2 and x[0].tolist() == [0, 10, 20] and y[0].tolist() == [30, 40]
    # the last window's horizon ends exactly at the series end
    assert issued[-1] == 7 and x[-1].tolist() == [50, 60, 70] and y[-1].tolist() == [80, 90]
    assert len(issued) == 10 - 3 - 2 + 1
    assert np.array_equal(x[:, -1], issued * 10) and np.array_equal(y[:, 0], (issued + 1) * 10)


def test_stride_first_and_too_short():
    issued, x, _ = windows(V, lookback=3, horizon=2, stride=3, first=4)
    assert issued.tolist() == [4, 7] and x[1].tolist() == [50, 60, 70]
    assert windows(V, lookback=3, horizon=2, first=0)[0][0] == 2  # never a window with a short lookback
    issued, x, y = windows(V[:4], lookback=3, horizon=2)
    assert issued.size == 0 and x.shape == (0, 3) and y.shape == (0, 2)
    assert windows(V[:5], lookback=3, horizon=2)[0].tolist() == [2]


def test_windows_keep_missing_values():
    v = V.copy()
    v[4] = np.nan
    _, x, y = windows(v, lookback=3, horizon=2)
    assert np.isnan(y[0, 1]) and np.isnan(y[1, 0]) and np.isnan(x[2, 2]) and np.isnan(x[4, 0])
    assert y[1, 1] == 50 and x[5, 0] == 50


T0, DT = 1_700_000_000, 3600
TIMES = T0 + DT * np.arange(10)


def test_realised_waits_for_the_whole_horizon():
    assert realised(TIMES[:4], V[:4], issued_at=int(TIMES[1]), horizon=3, interval=DT, now=int(TIMES[3])) is None
    truth = realised(TIMES[:5], V[:5], issued_at=int(TIMES[1]), horizon=3, interval=DT, now=int(TIMES[4]))
    assert truth.tolist() == [20, 30, 40]  # steps 2..4: never the issue step itself


def test_realised_matches_windows_everywhere():
    issued, _, y = windows(V, lookback=3, horizon=2)
    for t, want in zip(issued, y, strict=True):
        got = realised(TIMES, V, issued_at=int(TIMES[t]), horizon=2, interval=DT, now=int(TIMES[-1]))
        assert got.tolist() == want.tolist()
    # a horizon that would end one step past the series end is not yet realised
    assert realised(TIMES, V, issued_at=int(TIMES[8]), horizon=2, interval=DT, now=int(TIMES[-1])) is None


def test_realised_missing_reading_is_nan_not_a_neighbour():
    keep = np.array([i != 3 for i in range(10)])
    truth = realised(TIMES[keep], V[keep], issued_at=int(TIMES[1]), horizon=3, interval=DT, now=int(TIMES[-1]))
    assert truth[0] == 20 and np.isnan(truth[1]) and truth[2] == 40
    # readings off the grid (late by a second) do not count as the step
    truth = realised(TIMES + 1, V, issued_at=int(TIMES[1]), horizon=2, interval=DT, now=int(TIMES[-1]) + 1)
    assert np.isnan(truth).all()


def test_mask_zero_runs_only_long_runs():
    v = np.array([[0, 1], [0, 0], [0, 0], [5, 1], [0, 0], [0, 2]], float)
    m = mask_zero_runs(v, min_run=3)
    assert np.isnan(m[:3, 0]).all() and m[3:, 0].tolist() == [5, 0, 0]
    assert m[:, 1].tolist() == [1, 0, 0, 1, 0, 2]
    assert v[0, 0] == 0  # the input is not touched
    assert np.isnan(mask_zero_runs(np.zeros(4), 4)).all()  # a run at the series end


def test_series_scale_and_calendar():
    v = np.array([1, 2, 3, 5, np.nan, 9.0])
    level, err = series_scale(v, season=2)
    assert level == pytest.approx(4.0) and err == pytest.approx((2 + 3 + 4) / 3)  # |3-1|, |5-2|, |9-5|; the NaN pair skipped
    assert np.isnan(series_scale(np.ones(2), season=2)[1])
    monday_13h = int(np.datetime64("2024-03-04T13:00", "s").astype(np.int64))
    assert calendar(np.array([monday_13h, monday_13h + 6 * 86400 + 3600])).tolist() == [[13, 0], [14, 6]]


def test_settings_refuse_nonsense():
    ForecastSettings(horizon=24, lookback=168, season=168, interval=3600)
    for bad in ({"horizon": 0}, {"lookback": 1.5}, {"interval": True}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ForecastSettings(**{"horizon": 24, "lookback": 168, "season": 168, "interval": 3600, **bad})
