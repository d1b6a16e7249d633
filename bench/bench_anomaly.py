#!/usr/bin/env python
"""Anomaly tasks offline: the edge autoencoder, the cloud kNN and the reference on one split, clean and contaminated.

    .venv/bin/python bench/bench_anomaly.py [--tasks health-anomaly industrial-anomaly] [--seeds 0 1 2]
        [--max-train 1500] [--epochs 60] [--threads 1] [--contamination 0.02]
    .venv/bin/python bench/bench_anomaly.py --merge a.json b.json   # one table from runs done apart

Split (per task and seed, the same for every method): the windows of ``anomaly.normal_classes`` are
shuffled, 70 % train, 15 % calibration (the threshold is set on their scores, shared/model/threshold.py)
and 15 % test; every other window is an anomaly, and all of them are tested except a reserve drawn
first for contamination. ``clean`` trains on the train normals alone; ``contaminated`` adds that many
reserve anomalies that they are ``--contamination`` of the training stream, unlabelled. More than
``--max-train`` train normals are subsampled (said in the result). Metrics on the test windows:
AUROC (normal vs anomaly), recall of anomalies and the false-alarm rate measured on test normals at
the threshold set for the task's ``anomaly.false_alarm_rate``. Model bytes: the edge's ONNX file;
for kNN the feature bank it keeps.

Methods: edge AE = ConvAutoencoder on the edge input, edge ACF-kNN = AcfKNN (50 autocorrelation lags, k=20,
a bank of 400) on the edge input, both trimming as the spec says; cloud = RocketKNN k=20
on standardised MiniRocket features of the cloud input (trimming as the spec says); reference =
kNN k=5 on standardised MiniRocket features, no trimming (the issue's measured reference).
Writes bench/results/bench_anomaly.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# One thread per pool, set before torch and numba load: on a loaded 2-core box, torch's and numba's
# OpenMP pools spinning against each other ran the autoencoder 15-40x slower (a 40 s fit took over
# 25 minutes once MiniRocket had started numba's threads in the same process).
for _var in ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402  (after the thread settings above)

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results"


def split(y: np.ndarray, normal: np.ndarray, seed: int, contamination: float, max_train: int) -> dict:
    rng = np.random.default_rng(seed)
    normals = rng.permutation(np.flatnonzero(normal))
    anomalies = rng.permutation(np.flatnonzero(~normal))
    n_tr, n_cal = int(0.7 * len(normals)), int(0.15 * len(normals))
    train, cal, test_n = normals[:n_tr], normals[n_tr:n_tr + n_cal], normals[n_tr + n_cal:]
    subsampled = len(train) > max_train
    train = train[:max_train]
    n_contam = int(round(contamination * len(train) / (1 - contamination)))
    return {"train": np.sort(train), "cal": np.sort(cal), "test_normal": np.sort(test_n),
            "contam": np.sort(anomalies[:n_contam]), "test_anomaly": np.sort(anomalies[n_contam:]),
            "subsampled": subsampled}


def measure(det, cal: np.ndarray, test_n: np.ndarray, test_a: np.ndarray, rate: float) -> dict:
    from sklearn.metrics import roc_auc_score

    from shared.model.threshold import calibrate, false_alarm_rate

    t0 = time.perf_counter()
    s_cal, s_n, s_a = det.score(cal), det.score(test_n), det.score(test_a)
    score_s = time.perf_counter() - t0
    t = calibrate(s_cal, rate)
    auroc = roc_auc_score(np.r_[np.zeros(len(s_n)), np.ones(len(s_a))], np.r_[s_n, s_a])
    return {"auroc": float(auroc), "recall": float((s_a > t.value).mean()),
            "false_alarms": false_alarm_rate(s_n, t.value), "threshold_guaranteed": t.guaranteed,
            "score_ms_per_window": 1000 * score_s / (len(cal) + len(test_n) + len(test_a))}


def run_task(name: str, seeds: list[int], args: argparse.Namespace) -> list[dict]:
    from cloud_worker.models.anomaly import AcfKNN, ConvAutoencoder, RocketKNN
    from cloud_worker.releasing.export import to_onnx
    from lepton_tasks import load_task

    task = load_task(name)
    cfg = task.spec.anomaly_cfg
    d = task.dataset()
    normal = np.isin(d.y, [task.classes.index(c) for c in cfg.normal_classes])
    edge_x = task.preprocess_all(d.raw)
    cloud_x = task.preprocess_cloud_all(d.raw)
    trim = cfg.trim_fraction if cfg.contamination == "trim" else 0.0
    rows = []
    for seed in seeds:
        sp = split(d.y, normal, seed, args.contamination, args.max_train)
        for scenario in ("clean", "contaminated"):
            train = sp["train"] if scenario == "clean" else np.r_[sp["train"], sp["contam"]]
            methods = {
                "edge AE": (ConvAutoencoder(epochs=args.epochs, trim=trim, seed=seed), edge_x),
                "edge ACF-kNN": (AcfKNN(lags=50, k=20, trim=trim, bank=400, seed=seed), edge_x),
                "cloud kNN k=20": (RocketKNN(k=20, trim=trim, seed=seed), cloud_x),
                "reference kNN k=5": (RocketKNN(k=5, trim=0.0, seed=seed), cloud_x),
            }
            for method, (det, x) in methods.items():
                t0 = time.perf_counter()
                det.fit(x[train])
                fit_s = time.perf_counter() - t0
                row = {"task": name, "seed": seed, "scenario": scenario, "method": method,
                       "train": int(len(train)), "contaminating": int(len(train) - len(sp["train"])),
                       "calibration": int(len(sp["cal"])), "test_normal": int(len(sp["test_normal"])),
                       "test_anomaly": int(len(sp["test_anomaly"])), "subsampled": bool(sp["subsampled"]),
                       "rate": cfg.false_alarm_rate, "fit_s": fit_s,
                       **measure(det, x[sp["cal"]], x[sp["test_normal"]], x[sp["test_anomaly"]],
                                 cfg.false_alarm_rate)}
                row["bytes"] = len(to_onnx(det.net, task.input_shape)) if method.startswith("edge") else det.nbytes()
                rows.append(row)
                print(f"  {name} seed {seed} {scenario:12s} {method:18s} AUROC {row['auroc']:.3f} recall "
                      f"{row['recall']:.3f} FA {row['false_alarms']:.4f} ({fit_s:.0f} s)", flush=True)
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    out = []
    keys = sorted({(r["task"], r["scenario"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1] != "clean", k[2]))
    for task, scenario, method in keys:
        rs = [r for r in rows if (r["task"], r["scenario"], r["method"]) == (task, scenario, method)]
        fa = [r["false_alarms"] for r in rs]
        out.append({"task": task, "scenario": scenario, "method": method, "seeds": len(rs),
                    "auroc": float(np.mean([r["auroc"] for r in rs])),
                    "auroc_min": float(np.min([r["auroc"] for r in rs])),
                    "recall": float(np.mean([r["recall"] for r in rs])), "rate": rs[0]["rate"],
                    "false_alarms": float(np.mean(fa)), "false_alarms_range": [float(min(fa)), float(max(fa))],
                    "bytes": int(np.mean([r["bytes"] for r in rs])), "train": rs[0]["train"],
                    "test_normal": rs[0]["test_normal"], "test_anomaly": rs[0]["test_anomaly"],
                    "fit_s": float(np.mean([r["fit_s"] for r in rs]))})
    return out


def table(summary: list[dict]) -> str:
    lines = ["| task | stream | method | AUROC (min) | recall at rate | false alarms (range) | model bytes | fit s |",
             "|---|---|---|---|---|---|---|---|"]
    for s in summary:
        lo, hi = s["false_alarms_range"]
        lines.append(f"| {s['task']} | {s['scenario']} | {s['method']} | {s['auroc']:.3f} ({s['auroc_min']:.3f}) | "
                     f"{s['recall']:.3f} at {s['rate']:.0%} | {s['false_alarms']:.4f} ({lo:.4f}-{hi:.4f}) | "
                     f"{s['bytes']:,} | {s['fit_s']:.0f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", nargs="+", default=["health-anomaly", "industrial-anomaly"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--max-train", type=int, default=1500, help="train normals at most (subsampled above)")
    ap.add_argument("--epochs", type=int, default=60, help="autoencoder epochs")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--contamination", type=float, default=0.02, help="share of anomalies in a contaminated stream")
    ap.add_argument("--out", default=str(RESULTS / "bench_anomaly.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON", help="no runs: summarise these results' runs together "
                    "(tasks benched in parallel processes)")
    args = ap.parse_args(argv)
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    t0 = time.perf_counter()
    if args.merge:
        parts = [json.loads(Path(f).read_text()) for f in args.merge]
        rows = [r for part in parts for r in part["runs"]]
        args = argparse.Namespace(**{**parts[0]["args"], "tasks": [t for p in parts for t in p["args"]["tasks"]],
                                     "out": args.out, "merge": args.merge})
    else:
        import torch

        torch.set_num_threads(args.threads)
        rows = [r for name in args.tasks for r in run_task(name, args.seeds, args)]
    summary = summarise(rows)
    md = table(summary)
    print(md)
    split_words = (f"normals 70/15/15 train/calibration/test (train capped at {args.max_train}), every other "
                   f"window tested but a contamination reserve; contaminated: {args.contamination:.0%} of the "
                   f"training stream anomalies, unlabelled; seeds {args.seeds}; AUROC on test normals vs test "
                   f"anomalies; recall and false alarms at the threshold set on calibration normals for the "
                   f"task's false_alarm_rate")
    # file names only: where this machine keeps them means nothing to a reader of the result
    recorded = {**vars(args), "out": Path(args.out).name,
                "merge": [Path(f).name for f in args.merge] if args.merge else None}
    result = {"split": split_words, "args": recorded, "wall_s": time.perf_counter() - t0,
              "summary": summary, "runs": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    out.with_suffix(".md").write_text(f"# bench_anomaly\n\nSplit and metric: {split_words}.\n\n{md}\n")
    print(f"wrote {out} ({result['wall_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
