"""A user's forecast data from CSV: one regular series per device.

Two layouts, told apart by the header (``layout="auto"``):

- wide: a timestamp column (``timestamp_column``, default ``timestamp``) and one numeric column per
  device, one row per time step;
- long: exactly the columns ``device,timestamp,value``, one row per reading, in any order.

Timestamps are ISO 8601 (``2024-03-01T13:00``, ``2024-03-01 13:00:00``, ``...Z`` or ``+13:00``); ones
without an offset are read as UTC. An empty cell is a missing value (NaN); a device may start late or
stop early. Every error is one line (TaskSpecError) that names the line or column: a timestamp that does
not parse, a value that is not a number, a gap (two consecutive readings of a device not ``interval``
apart), and a series too short for one sample of lookback + horizon steps.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

import numpy as np

from lepton_tasks.spec import TaskSpecError
from shared.model.forecast_windows import ForecastSettings, mask_zero_runs

LONG_COLUMNS = ("device", "timestamp", "value")


@dataclass(frozen=True)
class SeriesSet:
    """Devices' series on one regular time grid; NaN where a device has no reading."""

    times: np.ndarray  # (T,) int64 epoch seconds, ascending, ``interval`` apart
    devices: tuple[str, ...]
    values: np.ndarray  # (T, D) float64

    def column(self, device: str) -> np.ndarray:
        return self.values[:, self.devices.index(device)]


def parse_time(text: str, where: str) -> int:
    s = text.strip()
    try:
        dt = datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith(("Z", "z")) else s)
    except ValueError:
        raise TaskSpecError(f"{where}: unparseable timestamp {text!r} (want ISO 8601, e.g. 2024-03-01T13:00)") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def _number(text: str, where: str) -> float:
    s = text.strip()
    if s == "":
        return float("nan")
    try:
        return float(s)
    except ValueError:
        raise TaskSpecError(f"{where}: non-numeric value {text!r}") from None


def _check_regular(times: np.ndarray, lines: np.ndarray, interval: int, what: str) -> None:
    d = np.diff(times)
    bad = np.flatnonzero(d != interval)
    if bad.size:
        i = int(bad[0])
        raise TaskSpecError(f"{what}: line {int(lines[i + 1])} is {int(d[i])} s after line {int(lines[i])}; "
                            f"readings must be exactly interval = {interval} s apart (a gap or a repeat)")


def _read_wide(rows: list[list[str]], header: list[str], ts_col: str, path: str) -> tuple[np.ndarray, np.ndarray,
                                                                                          list[str], np.ndarray]:
    if ts_col not in header:
        raise TaskSpecError(f"{path}: no timestamp column {ts_col!r} in the header {header[:8]}")
    k = header.index(ts_col)
    devices = [h for i, h in enumerate(header) if i != k]
    if not devices:
        raise TaskSpecError(f"{path}: no device columns besides {ts_col!r}")
    times = np.array([parse_time(r[k], f"{path} line {n}") for n, r in rows], np.int64)
    vals = np.array([[_number(c, f"{path} line {n} column {header[i]!r}") for i, c in enumerate(r) if i != k]
                     for n, r in rows], np.float64).reshape(len(rows), len(devices))
    lines = np.array([n for n, _ in rows])
    return times, vals, devices, lines


def load_csv(path: str | Path, settings: ForecastSettings, *, layout: Literal["auto", "wide", "long"] = "auto",
             timestamp_column: str = "timestamp", outage_zeros: int | None = None) -> SeriesSet:
    """Read a forecast task's CSV; ``outage_zeros`` = N turns runs of >= N zero readings into missing values."""
    p = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as f:
            table = list(csv.reader(f))
    except OSError as exc:
        raise TaskSpecError(f"{p}: cannot read: {exc.strerror}") from None
    if not table:
        raise TaskSpecError(f"{p}: empty file")
    header = [h.strip() for h in table[0]]
    rows = [(n, r) for n, r in enumerate(table[1:], start=2) if any(c.strip() for c in r)]
    for n, r in rows:
        if len(r) != len(header):
            raise TaskSpecError(f"{p} line {n}: {len(r)} fields, the header has {len(header)}")
    if layout == "auto":
        layout = "long" if tuple(h.lower() for h in header) == LONG_COLUMNS else "wide"
    if layout == "wide":
        times, vals, devices, lines = _read_wide(rows, header, timestamp_column, p)
        order = np.argsort(times, kind="stable")
        times, vals, lines = times[order], vals[order], lines[order]
        _check_regular(times, lines, settings.interval, p)
    else:
        if tuple(h.lower() for h in header) != LONG_COLUMNS:
            raise TaskSpecError(f"{p}: long layout wants the columns {','.join(LONG_COLUMNS)}, got {','.join(header)}")
        per: dict[str, list[tuple[int, float, int]]] = {}
        for n, r in rows:
            per.setdefault(r[0].strip(), []).append(
                (parse_time(r[1], f"{p} line {n}"), _number(r[2], f"{p} line {n} column 'value'"), n))
        devices = sorted(per)
        for dev in devices:
            per[dev].sort()
            _check_regular(np.array([t for t, _, _ in per[dev]], np.int64), np.array([n for _, _, n in per[dev]]),
                           settings.interval, f"{p} device {dev!r}")
        start = min(per[d][0][0] for d in devices)
        stop = max(per[d][-1][0] for d in devices)
        if any((per[d][0][0] - start) % settings.interval for d in devices):
            raise TaskSpecError(f"{p}: devices' timestamps are not on one grid of interval = {settings.interval} s")
        times = np.arange(start, stop + 1, settings.interval, dtype=np.int64)
        vals = np.full((times.size, len(devices)), np.nan)
        for j, dev in enumerate(devices):
            i0 = (per[dev][0][0] - start) // settings.interval
            vals[i0:i0 + len(per[dev]), j] = [v for _, v, _ in per[dev]]
    if outage_zeros:
        vals = mask_zero_runs(vals, outage_zeros)
    need = settings.lookback + settings.horizon
    longest = int(max(np.isfinite(vals[:, j]).sum() for j in range(vals.shape[1]))) if vals.size else 0
    if longest < need:
        raise TaskSpecError(f"{p}: the longest series has {longest} readings; one sample needs lookback + horizon "
                            f"= {settings.lookback} + {settings.horizon} = {need}")
    return SeriesSet(times, tuple(devices), vals)
