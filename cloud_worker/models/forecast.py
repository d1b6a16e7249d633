"""Forecasters behind one interface: fit / predict / calibrate / predict_interval / score (MASE).

Four of them, from the baseline up:

- SeasonalNaive: the value one season earlier (lag = settings.season);
- DeviceRidge: one ridge per device on its own scaled lags (+ day of week); cannot serve a new device;
- FleetGBT: one HistGradientBoosting per horizon step across all devices, on device-agnostic features
  (lags over the device's own level, hour of day, day of week), so one model serves every device;
- EdgeMLP: a small torch MLP across the fleet whose input row is shared.model.forecast_windows.edge_inputs,
  exported to ONNX by cloud_worker/releasing/forecast_export.py for the agents.

Values are divided by each device's level (its in-sample mean) before any learned model sees them, and
forecasts multiplied back. MASE divides each absolute error by the device's in-sample seasonal-naive error,
then averages over every finite (sample, step). Intervals are split-conformal (shared/model/conformal.py)
on residuals over the level, one width per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from lepton_tasks.series import SeriesSet
from shared.model import conformal
from shared.model.forecast_windows import ForecastSettings, calendar, edge_inputs, series_scale, windows


class UnknownDevice(KeyError):
    """A per-device model was asked about a device it has no model for."""


@dataclass
class Samples:
    """Forecast samples of many devices: inputs, truths and what each device is measured against."""

    x: np.ndarray  # (n, L) the last L values, complete
    y: np.ndarray  # (n, H) the truth, NaN where a reading is missing
    device: np.ndarray  # (n,) device names
    issued_at: np.ndarray  # (n,) int64 seconds of the issue step
    level: np.ndarray  # (n,) the device's in-sample mean
    naive_err: np.ndarray  # (n,) the device's in-sample seasonal-naive MAE (MASE's denominator)

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def subset(self, keep: np.ndarray) -> Samples:
        return Samples(self.x[keep], self.y[keep], self.device[keep], self.issued_at[keep], self.level[keep],
                       self.naive_err[keep])


def device_stats(series: SeriesSet, season: int, start: int | None = None,
                 end: int | None = None) -> dict[str, tuple[float, float]]:
    """device -> (level, naive error) over the readings stamped in [start, end): the training period."""
    rows = np.ones(series.times.size, bool)
    if start is not None:
        rows &= series.times >= start
    if end is not None:
        rows &= series.times < end
    out = {}
    for j, dev in enumerate(series.devices):
        level, err = series_scale(series.values[rows, j], season)
        if np.isfinite(level) and np.isfinite(err) and level > 0 and err > 0:
            out[dev] = (level, err)
    return out


def make_samples(series: SeriesSet, settings: ForecastSettings, stats: dict[str, tuple[float, float]], *,
                 start: int, end: int, stride: int = 1, devices: tuple[str, ...] | None = None) -> Samples:
    """Samples issued at start, start + stride, ... before ``end``, whose whole horizon also lies before ``end``
    (no peeking past a split).

    Only samples with a complete lookback and at least one finite truth are kept: a counter that was down
    in the last L hours issues no forecast. Devices without stats are left out.
    """
    L, H = settings.lookback, settings.horizon
    t0, dt = int(series.times[0]), settings.interval
    first = max(int(np.ceil((start - t0) / dt)), 0)
    if first < L - 1:  # keep the phase: forecasts issued at 23:00 every 24 h stay at 23:00
        first += -(-(L - 1 - first) // stride) * stride
    last_truth = (end - t0) // dt - 1 if (end - t0) % dt == 0 else (end - t0) // dt  # last step stamped < end
    parts = []
    for j, dev in enumerate(series.devices):
        if dev not in stats or (devices is not None and dev not in devices):
            continue
        v = series.values[: last_truth + 1, j]
        issued, x, y = windows(v, L, H, stride=stride, first=first)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y).any(axis=1)
        if ok.any():
            level, err = stats[dev]
            k = int(ok.sum())
            parts.append((x[ok], y[ok], np.full(k, dev, object), series.times[issued[ok]],
                          np.full(k, level), np.full(k, err)))
    if not parts:
        return Samples(np.empty((0, L)), np.empty((0, H)), np.empty(0, object), np.empty(0, np.int64),
                       np.empty(0), np.empty(0))
    return Samples(*(np.concatenate(c) for c in zip(*parts, strict=True)))


def mase(s: Samples, pred: np.ndarray) -> float:
    err = np.abs(s.y - pred) / s.naive_err[:, None]
    return float(np.nanmean(err))


class Forecaster:
    """fit / predict are the model's; calibration, intervals and MASE are common to all."""

    name = "forecaster"

    def __init__(self, settings: ForecastSettings) -> None:
        self.settings = settings
        self.conformal: conformal.Conformal | None = None

    def fit(self, s: Samples) -> Forecaster:
        return self

    def predict(self, s: Samples) -> np.ndarray:
        raise NotImplementedError

    def calibrate(self, s: Samples, coverage: float = 0.8) -> conformal.Conformal:
        """Conformal widths from a hold-out the model was not fit on."""
        self.conformal = conformal.calibrate(s.y, self.predict(s), coverage, scale=s.level)
        return self.conformal

    def predict_interval(self, s: Samples) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(point, lo, hi) each (n, H); calibrate() first."""
        if self.conformal is None:
            raise RuntimeError(f"{self.name}: predict_interval before calibrate")
        pred = self.predict(s)
        lo, hi = self.conformal.interval(pred, scale=s.level)
        return pred, lo, hi

    def score(self, s: Samples) -> float:
        return mase(s, self.predict(s))


class SeasonalNaive(Forecaster):
    name = "seasonal naive"

    def __init__(self, settings: ForecastSettings) -> None:
        if not settings.horizon <= settings.season <= settings.lookback:
            raise ValueError(f"seasonal naive needs horizon <= season <= lookback, got {settings}")
        super().__init__(settings)

    def predict(self, s: Samples) -> np.ndarray:
        a = self.settings.lookback - self.settings.season  # x[:, a + j] is one season before step j + 1
        return s.x[:, a:a + self.settings.horizon].copy()


def _dow(issued_at: np.ndarray) -> np.ndarray:
    return np.eye(7)[calendar(issued_at)[:, 1]]


class DeviceRidge(Forecaster):
    name = "ridge per device"

    def __init__(self, settings: ForecastSettings, alpha: float = 1.0, day_of_week: bool = True) -> None:
        super().__init__(settings)
        self.alpha, self.day_of_week = alpha, day_of_week
        self.models: dict[str, object] = {}

    def _features(self, s: Samples) -> np.ndarray:
        f = s.x / s.level[:, None]
        return np.concatenate([f, _dow(s.issued_at)], axis=1) if self.day_of_week else f

    def fit(self, s: Samples) -> DeviceRidge:
        from sklearn.linear_model import Ridge

        f, y = self._features(s), s.y / s.level[:, None]
        complete = np.isfinite(y).all(axis=1)
        for dev in np.unique(s.device):
            rows = (s.device == dev) & complete
            if rows.sum() >= 2:
                self.models[str(dev)] = Ridge(alpha=self.alpha).fit(f[rows], y[rows])
        return self

    def predict(self, s: Samples) -> np.ndarray:
        unknown = sorted(set(map(str, s.device)) - set(self.models))
        if unknown:
            raise UnknownDevice(f"{self.name}: no model for device(s) {unknown[:5]}")
        f, out = self._features(s), np.empty((len(s), self.settings.horizon))
        for dev, model in self.models.items():
            rows = s.device == dev
            if rows.any():
                out[rows] = model.predict(f[rows])  # type: ignore[attr-defined]
        return out * s.level[:, None]


class FleetGBT(Forecaster):
    name = "GBT across devices"

    def __init__(self, settings: ForecastSettings, max_iter: int = 200, learning_rate: float = 0.1,
                 seed: int = 0, threads: int = 1) -> None:
        super().__init__(settings)
        # OpenMP threads: on a 2-core box shared with other work, 2 threads took 27 s for a fit that 1 thread
        # does in 0.5 s (spinning workers starved of a core; sklearn 1.9, measured 2026-12-08)
        self.threads = threads
        self.kw = {"max_iter": max_iter, "learning_rate": learning_rate, "random_state": seed}
        self.models: list[object] = []

    @staticmethod
    def _features(s: Samples) -> np.ndarray:
        return np.concatenate([s.x / s.level[:, None], calendar(s.issued_at)], axis=1)

    def fit(self, s: Samples) -> FleetGBT:
        from sklearn.ensemble import HistGradientBoostingRegressor

        # unweighted: a sample_weight sends sklearn's binning through a weighted percentile in Python, 18x
        # the fit time (9 s for 25 iterations on 3,176 rows, sklearn 1.9, measured 2026-12-08)
        f, y = self._features(s), s.y / s.level[:, None]
        self.models = []
        with threadpool_limits(self.threads):
            for h in range(self.settings.horizon):
                rows = np.isfinite(y[:, h])
                m = HistGradientBoostingRegressor(early_stopping=False, **self.kw)
                self.models.append(m.fit(f[rows], y[rows, h]))
        return self

    def predict(self, s: Samples) -> np.ndarray:
        f = self._features(s)
        with threadpool_limits(self.threads):
            out = np.stack([m.predict(f) for m in self.models], axis=1)  # type: ignore[attr-defined]
        return out * s.level[:, None]


class EdgeMLP(Forecaster):
    """Seasonal naive plus a learned correction: out = x[one season back] + MLP(edge_inputs), over the level."""

    name = "MLP across devices (edge)"

    def __init__(self, settings: ForecastSettings, hidden: int = 128, epochs: int = 30, lr: float = 2e-3,
                 batch: int = 256, seed: int = 0) -> None:
        if not settings.horizon <= settings.season <= settings.lookback:
            raise ValueError(f"the edge MLP's seasonal skip needs horizon <= season <= lookback, got {settings}")
        super().__init__(settings)
        self.hidden, self.epochs, self.lr, self.batch, self.seed = hidden, epochs, lr, batch, seed
        self.net = None

    def build(self):
        import torch
        from torch import nn

        L, H, a = self.settings.lookback, self.settings.horizon, self.settings.lookback - self.settings.season

        class Net(nn.Module):
            def __init__(self, hidden: int) -> None:
                super().__init__()
                self.body = nn.Sequential(nn.Linear(L + 9, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                          nn.Linear(hidden, H))

            def forward(self, inp: torch.Tensor) -> torch.Tensor:
                return inp[:, a:a + H] + self.body(inp)

        return Net(self.hidden)

    def fit(self, s: Samples) -> EdgeMLP:
        import torch

        g = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        self.net = net = self.build()
        inp = torch.as_tensor(edge_inputs(s.x, s.level, s.issued_at))
        y = s.y / s.level[:, None]
        mask = torch.as_tensor(np.isfinite(y), dtype=torch.float32)
        target = torch.as_tensor(np.nan_to_num(y), dtype=torch.float32)
        w = torch.as_tensor(s.level / s.naive_err, dtype=torch.float32)[:, None] * mask  # L1 in MASE's units
        opt = torch.optim.AdamW(net.parameters(), lr=self.lr, weight_decay=1e-4)
        steps = self.epochs * max(1, int(np.ceil(len(s) / self.batch)))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps)
        net.train()
        for _ in range(self.epochs):
            for idx in torch.randperm(len(s), generator=g).split(self.batch):
                loss = ((net(inp[idx]) - target[idx]).abs() * w[idx]).sum() / w[idx].sum().clamp_min(1e-9)
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
        net.eval()
        return self

    def predict(self, s: Samples) -> np.ndarray:
        import torch

        if self.net is None:
            raise RuntimeError(f"{self.name}: predict before fit")
        with torch.no_grad():
            out = self.net(torch.as_tensor(edge_inputs(s.x, s.level, s.issued_at))).numpy()
        return out.astype(np.float64) * s.level[:, None]
