#!/usr/bin/env python
"""Forecasting the Auckland pedestrian counters: every forecaster side by side on one split.

    .venv/bin/python bench/bench_forecast.py [--issue-hour 23] [--gbt-iter 60] [--mlp-epochs 40]

Task: each sensor's next 24 hourly counts from its last 168 (lepton_tasks.packs.traffic.hourly_series;
runs of >= 24 zero counts are outages, read as missing), issued once a day after the count of 23:00-23:59
(``--issue-hour``): tomorrow's 24 hours, as a counter holding its day at midnight would forecast them. Split: train on forecasts whose whole horizon
lies before 2024-01-01, test on forecasts issued 2024-01-01 .. 2025-12-31. Metric: MASE, each absolute
error over the sensor's in-sample (before 2024) mean error of the same-hour-last-week forecast, averaged
over every (forecast, hour) with a reading. Intervals: nominal 80 % split-conformal, calibrated on 2023
by the same method fit on data before 2023 (widths over the sensor's level, per horizon hour), then
applied to the method fit on everything before 2024; coverage is the share of test readings inside.
"rolling" instead takes each forecast's widths from the same method's residuals over the last 28 days of
forecasts whose truth had arrived when it was issued (shared.model.conformal.rolling_widths; the hold-out's
widths until 50 such residuals exist): what an agent can do, since its truth arrives by itself.
"two fits" is the wall time of both fits (before 2023, before 2024) on the machine as loaded when it ran.

One forecast a day, in training and in test alike, keeps the run to minutes on 2 cores; the seasonal
naive issued at every hour of the test years is printed beside it, to show what the daily issue changes.
The ridge's alpha is chosen on the 2023 hold-out (1, 10 or 100), never on the test years.

New sensor: three sensors (small, middle, large) are left out of a second fit of the fleet models;
each in turn appears with 4 weeks of history (4 start dates across 2024), which alone give its level,
its MASE denominator and, for the own-ridge baseline (the hold-out's alpha), its training data; scored
over its next 4 weeks, one forecast a day. Writes ``bench/results/bench_forecast.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results"
NEW_SENSORS = ("1 Courthouse Lane", "19 Shortland Street", "45 Queen Street")
NEW_STARTS = ("2024-02-05", "2024-05-06", "2024-08-05", "2024-10-07")  # Mondays
WEEK = 7 * 86400
ROLLING_DAYS = 28
TARGETS = {"edge": 0.72, "cloud": 0.63, "coverage": (0.78, 0.82), "new sensor": 0.85}


def ts(day: str) -> int:
    return int(np.datetime64(day, "s").astype(np.int64))


def run(issue_hour: int, gbt_iter: int, mlp_epochs: int, threads: int) -> dict:
    import torch

    from cloud_worker.models.forecast import (
        DeviceRidge,
        EdgeMLP,
        FleetGBT,
        SeasonalNaive,
        device_stats,
        make_samples,
        mase,
    )
    from cloud_worker.releasing.forecast_export import export
    from cloud_worker.releasing.forecast_export import run as ort_run
    from lepton_tasks.packs.traffic import hourly_series
    from shared.model.conformal import coverage, rolling_widths
    from shared.model.forecast_windows import ForecastSettings, edge_inputs

    torch.set_num_threads(threads)
    S = ForecastSettings(horizon=24, lookback=168, season=168, interval=3600)
    series = hourly_series()
    y2023, y2024, y2026 = ts("2023-01-01"), ts("2024-01-01"), ts("2026-01-01")
    t0 = int(series.times[0]) + issue_hour * 3600  # the grid starts at midnight
    stride, at = 24, issue_hour * 3600
    stats_cal, stats = device_stats(series, S.season, end=y2023), device_stats(series, S.season, end=y2024)
    train_cal = make_samples(series, S, stats_cal, start=t0, end=y2023, stride=stride)
    hold = make_samples(series, S, stats_cal, start=y2023 + at, end=y2024, stride=stride)
    train = make_samples(series, S, stats, start=t0, end=y2024, stride=stride)
    test = make_samples(series, S, stats, start=y2024 + at, end=y2026, stride=stride)
    test_all = make_samples(series, S, stats, start=y2024, end=y2026, stride=1)
    print(f"samples: train {len(train)}, 2023 hold-out {len(hold)} (fit before 2023: {len(train_cal)}), "
          f"test {len(test)} (daily at {issue_hour}:00), {len(series.devices)} sensors", flush=True)

    alphas = {a: DeviceRidge(S, alpha=a).fit(train_cal).score(hold) for a in (1.0, 10.0, 100.0)}
    alpha = min(alphas, key=alphas.__getitem__)
    print(f"  ridge alpha on the 2023 hold-out: {alpha:g} (MASE {', '.join(f'{a:g}: {v:.3f}' for a, v in alphas.items())})",
          flush=True)
    def rolling(pred: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> dict:
        w = rolling_widths(test.issued_at, test.y, pred, 0.8, horizon_s=S.horizon * S.interval,
                           window_s=ROLLING_DAYS * 86400, scale=test.level) * test.level[:, None]
        lo_r, hi_r = np.where(np.isnan(w), lo, pred - w), np.where(np.isnan(w), hi, pred + w)
        return {"coverage_rolling": coverage(test.y, lo_r, hi_r),
                "width_rolling_mase": float(np.nanmean((hi_r - lo_r) / test.naive_err[:, None]))}

    makers = {"seasonal naive (lag 168)": lambda: SeasonalNaive(S),
              f"ridge per sensor (+ day of week, alpha {alpha:g})": lambda: DeviceRidge(S, alpha=alpha),
              f"GBT across sensors ({gbt_iter} iter)": lambda: FleetGBT(S, max_iter=gbt_iter, learning_rate=0.15,
                                                                       threads=threads),
              f"MLP across sensors (edge, {mlp_epochs} ep)": lambda: EdgeMLP(S, epochs=mlp_epochs)}
    rows = []
    mlp = None
    for name, make in makers.items():
        t = time.time()
        width = make().fit(train_cal).calibrate(hold, 0.8).width
        m = make().fit(train)
        fit_s = time.time() - t
        m.calibrate(hold, 0.8)  # replaced below by the widths of the model that never saw 2023
        m.conformal = type(m.conformal)(0.8, width, m.conformal.n)  # type: ignore[union-attr, misc]
        pred, lo, hi = m.predict_interval(test)
        rows.append({"method": name, "mase": mase(test, pred), "coverage": coverage(test.y, lo, hi),
                     "width_mase": float(np.nanmean((hi - lo) / test.naive_err[:, None])), "fit_s": round(fit_s, 1),
                     **rolling(pred, lo, hi)})
        print(f"  {name}: MASE {rows[-1]['mase']:.3f}, 80 % coverage {rows[-1]['coverage']:.3f}, rolling "
              f"{rows[-1]['coverage_rolling']:.3f} ({fit_s:.0f} s)", flush=True)
        if isinstance(m, EdgeMLP):
            mlp = m
    assert mlp is not None and mlp.net is not None
    feats = edge_inputs(test.x, test.level, test.issued_at)
    onnx_bytes, parity = export(mlp.net, feats[:512])
    onnx_pred = ort_run(onnx_bytes, feats).astype(np.float64) * test.level[:, None]
    lo, hi = mlp.conformal.interval(onnx_pred, scale=test.level)  # type: ignore[union-attr]
    rows.append({"method": "MLP across sensors, as ONNX in onnxruntime", "mase": mase(test, onnx_pred),
                 "coverage": coverage(test.y, lo, hi),
                 "width_mase": float(np.nanmean((hi - lo) / test.naive_err[:, None])), "fit_s": None,
                 **rolling(onnx_pred, lo, hi)})
    naive_all = SeasonalNaive(S).score(test_all)

    # the new sensor: fleet models that never saw it
    others = tuple(d for d in series.devices if d not in NEW_SENSORS)
    train_wo = train.subset(np.isin(train.device, others))
    t = time.time()
    fleet = {"GBT across sensors": makers[f"GBT across sensors ({gbt_iter} iter)"]().fit(train_wo),
             "MLP across sensors (edge)": makers[f"MLP across sensors (edge, {mlp_epochs} ep)"]().fit(train_wo)}
    print(f"  fleet models without {len(NEW_SENSORS)} sensors fit ({time.time() - t:.0f} s)", flush=True)
    errs: dict[str, list[np.ndarray]] = {"seasonal naive (lag 168)": [], "own ridge on 4 weeks": [],
                                         **{k: [] for k in fleet}}
    for day in NEW_STARTS:
        h0 = ts(day)
        st = device_stats(series, S.season, start=h0, end=h0 + 4 * WEEK)
        for dev in NEW_SENSORS:
            hist = make_samples(series, S, st, start=h0 + at, end=h0 + 4 * WEEK, stride=stride, devices=(dev,))
            ev = make_samples(series, S, st, start=h0 + 4 * WEEK + at, end=h0 + 8 * WEEK, stride=stride, devices=(dev,))
            models = {"seasonal naive (lag 168)": SeasonalNaive(S),
                      "own ridge on 4 weeks": DeviceRidge(S, alpha=alpha).fit(hist),
                      **fleet}
            for k, m in models.items():
                errs[k].append((np.abs(ev.y - m.predict(ev)) / ev.naive_err[:, None]).ravel())
    new_rows = [{"method": k, "mase": float(np.nanmean(np.concatenate(v)))} for k, v in errs.items()]
    for r in new_rows:
        print(f"  new sensor, {r['method']}: MASE {r['mase']:.3f}", flush=True)
    return {"settings": {"horizon": S.horizon, "lookback": S.lookback, "season": S.season, "interval_s": S.interval},
            "split": "train: horizon ends before 2024-01-01; conformal hold-out: 2023 (methods refit before 2023); "
                     "test: issued 2024-01-01..2025-12-31",
            "metric": "MASE over the sensor's in-sample (pre-2024) lag-168 naive MAE; 80 % conformal coverage",
            "issue_hour": issue_hour, "ridge_alpha_holdout": alphas, "samples": {"train": len(train), "holdout": len(hold), "test": len(test),
                                            "test_every_hour": len(test_all)},
            "naive_every_hour": naive_all, "onnx_parity": parity, "onnx_bytes": len(onnx_bytes),
            "methods": rows, "new_sensor": {"sensors": list(NEW_SENSORS), "starts": list(NEW_STARTS),
                                            "history_weeks": 4, "eval_weeks": 4, "methods": new_rows},
            "targets": TARGETS}


def table(rec: dict) -> str:
    out = [f"Auckland counters, next {rec['settings']['horizon']} h from the last {rec['settings']['lookback']} h. "
           f"Split: {rec['split']}. Metric: {rec['metric']}. One forecast a day, at {rec['issue_hour']}:00 "
           f"({rec['samples']['test']:,} test forecasts; seasonal naive issued at every hour: "
           f"{rec['naive_every_hour']:.3f}). ONNX parity {rec['onnx_parity']:.1e}, {rec['onnx_bytes']:,} B. "
           "Widths: mean interval width in MASE units.", "",
           "| method | MASE | 80 % coverage, 2023 hold-out | width | 80 % coverage, rolling 28 d | width | two fits (s) |",
           "|---|---|---|---|---|---|---|"]
    for r in rec["methods"]:
        fit = "" if r["fit_s"] is None else f"{r['fit_s']:.0f}"
        out.append(f"| {r['method']} | {r['mase']:.3f} | {r['coverage']:.3f} | {r['width_mase']:.2f} | "
                   f"{r['coverage_rolling']:.3f} | {r['width_rolling_mase']:.2f} | {fit} |")
    ns = rec["new_sensor"]
    out += ["", f"New sensor: {', '.join(ns['sensors'])}, each with {ns['history_weeks']} weeks of history from "
            f"{', '.join(ns['starts'])}, scored over the next {ns['eval_weeks']} weeks (a forecast a day); "
            "fleet models fit without these sensors; MASE denominator from the 4 weeks of history.", "",
            "| method | MASE |", "|---|---|"]
    out += [f"| {r['method']} | {r['mase']:.3f} |" for r in ns["methods"]]
    return "\n".join(out) + "\n"


def main() -> int:
    cleanup.guard()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--issue-hour", type=int, default=23, help="the hour whose count completes the day's input")
    p.add_argument("--gbt-iter", type=int, default=60)
    p.add_argument("--mlp-epochs", type=int, default=40)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "bench_forecast.json")
    p.add_argument("--redraw", action="store_true", help="write the .md again from --out, run nothing")
    args = p.parse_args()
    if args.redraw:
        rec = json.loads(args.out.read_text())
    else:
        t0 = time.time()
        rec = run(args.issue_hour, args.gbt_iter, args.mlp_epochs, args.threads)
        rec["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0))
        rec["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
        rec["wall_s"] = round(time.time() - t0)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rec, indent=2) + "\n")
    text = table(rec)
    print(text)
    args.out.with_suffix(".md").write_text(f"# Forecasting the Auckland counters ({rec['when']}, {rec['machine']}, "
                                           f"{rec['wall_s']} s)\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
