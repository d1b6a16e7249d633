"""The forecasters on synthetic seasonal series of devices 100x apart in size: each beats forecasting 0,
the learned ones beat the seasonal naive, the fleet models serve a device they never saw, conformal
intervals cover on later data, and the edge MLP runs the same in onnxruntime as in torch."""

from __future__ import annotations

import numpy as np
import pytest

from cloud_worker.models.forecast import (
    DeviceRidge,
    EdgeMLP,
    FleetGBT,
    SeasonalNaive,
    UnknownDevice,
    device_stats,
    make_samples,
    mase,
)
from cloud_worker.releasing.forecast_export import export, run
from lepton_tasks.series import SeriesSet
from shared.model.conformal import coverage
from shared.model.forecast_windows import ForecastSettings, edge_inputs

S = ForecastSettings(horizon=12, lookback=48, season=24, interval=3600)
T0 = int(np.datetime64("2024-01-01T00:00", "s").astype(np.int64))  # a Monday
WEEK = 7 * 24 * 3600
LEVELS = {"a": 5.0, "b": 20.0, "c": 60.0, "d": 150.0, "e": 400.0, "new": 90.0}


def _series(weeks: int = 12, seed: int = 0) -> SeriesSet:
    """Two daily peaks, quieter weekends, a slow drift and Poisson counts: a seasonal naive copies the noise
    of a single day and misses the weekday/weekend switch; a model that pools days does better."""
    rng = np.random.default_rng(seed)
    t = np.arange(weeks * 7 * 24)
    hour, dow = t % 24, (t // 24) % 7
    shape = 0.3 + np.exp(-((hour - 8.5) ** 2) / 4) + 1.3 * np.exp(-((hour - 17) ** 2) / 6)
    week = np.where(dow >= 5, 0.45, 1.0)
    cols = []
    for k, level in enumerate(LEVELS.values()):
        drift = 1 + 0.15 * np.sin(2 * np.pi * t / (len(t) * (1.5 + k / 4)))
        cols.append(rng.poisson(level * shape * week * drift).astype(float))
    v = np.stack(cols, axis=1)
    v[500:530, 1] = np.nan  # an outage: its samples are dropped, nothing breaks
    return SeriesSet(T0 + 3600 * t.astype(np.int64), tuple(LEVELS), v)


@pytest.fixture(scope="module")
def data():
    s = _series()
    train_end, cal_end = T0 + 8 * WEEK, T0 + 10 * WEEK
    stats = device_stats(s, S.season, end=train_end)
    known = tuple(d for d in LEVELS if d != "new")
    train = make_samples(s, S, stats, start=T0, end=train_end, stride=2, devices=known)
    cal = make_samples(s, S, stats, start=train_end, end=cal_end, devices=known)
    test = make_samples(s, S, stats, start=cal_end, end=T0 + 12 * WEEK, devices=known)
    # the new device: 2 weeks of history just before the test period give its level and naive error
    new_stats = device_stats(s, S.season, start=cal_end - 2 * WEEK, end=cal_end)
    new = make_samples(s, S, new_stats, start=cal_end, end=T0 + 12 * WEEK, devices=("new",))
    return train, cal, test, new


@pytest.fixture(scope="module")
def fitted(data):
    train = data[0]
    return {"naive": SeasonalNaive(S), "ridge": DeviceRidge(S).fit(train),
            "gbt": FleetGBT(S, max_iter=60).fit(train), "mlp": EdgeMLP(S, hidden=64, epochs=15).fit(train)}


def test_samples_respect_the_split(data):
    train, cal, test, new = data
    h = S.horizon * S.interval
    assert (train.issued_at + h < T0 + 8 * WEEK).all() and (cal.issued_at >= T0 + 8 * WEEK).all()
    assert (test.issued_at >= T0 + 10 * WEEK).all() and (test.issued_at + h < T0 + 12 * WEEK).all()
    assert set(train.device) == set(LEVELS) - {"new"} and set(new.device) == {"new"}
    assert np.isfinite(train.x).all() and np.isfinite(train.y).any(axis=1).all()


def test_every_model_beats_zero_and_the_learned_ones_beat_naive(data, fitted):
    test = data[2]
    zero = mase(test, np.zeros_like(test.y))
    scores = {k: m.score(test) for k, m in fitted.items()}
    naive = scores["naive"]
    assert all(v < 0.6 * zero for v in scores.values()), (zero, scores)
    for k in ("ridge", "gbt", "mlp"):
        assert scores[k] < 0.85 * naive, (k, scores)


def test_fleet_models_serve_a_device_they_never_saw(data, fitted):
    _, _, test, new = data
    naive_new = fitted["naive"].score(new)
    for k in ("gbt", "mlp"):
        assert fitted[k].score(new) < 0.85 * naive_new, (k, fitted[k].score(new), naive_new)
        assert fitted[k].score(new) < 1.3 * fitted[k].score(test)
    with pytest.raises(UnknownDevice, match="new"):
        fitted["ridge"].predict(new)


@pytest.mark.parametrize("k", ["naive", "ridge", "gbt", "mlp"])
def test_conformal_interval_covers_later_data(data, fitted, k):
    _, cal, test, _ = data
    m = fitted[k]
    with pytest.raises(RuntimeError, match="calibrate"):
        type(m)(S).predict_interval(test)
    m.calibrate(cal, 0.8)
    pred, lo, hi = m.predict_interval(test)
    assert np.array_equal(pred, m.predict(test)) and (lo <= pred).all() and (pred <= hi).all()
    assert 0.72 < coverage(test.y, lo, hi) < 0.88  # nominal 0.8; ~1,600 calibration rows per step


def test_edge_mlp_onnx_parity(data, fitted):
    test = data[2]
    mlp = fitted["mlp"]
    rows = edge_inputs(test.x, test.level, test.issued_at)
    onnx_bytes, diff = export(mlp.net, rows[:256])
    assert diff < 1e-4
    out = run(onnx_bytes, rows) * test.level[:, None]
    assert np.abs(out - mlp.predict(test)).max() < 1e-3 * test.level.max()
    assert abs(mase(test, out) - mlp.score(test)) < 1e-4


def test_daily_samples_keep_their_issue_hour():
    from shared.model.forecast_windows import calendar

    s = _series(weeks=4)
    stats = device_stats(s, S.season)
    daily = make_samples(s, S, stats, start=T0 + 23 * 3600, end=T0 + 4 * WEEK, stride=24, devices=("a",))
    assert set(calendar(daily.issued_at)[:, 0]) == {23}
    assert daily.issued_at[0] == T0 + 47 * 3600  # the first 23:00 with a whole lookback (L = 48)
    assert daily.issued_at[-1] + S.horizon * 3600 < T0 + 4 * WEEK
