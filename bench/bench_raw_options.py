#!/usr/bin/env python
"""How raw samples should travel with escalations: every one, one in N, or on the cloud's request.

    .venv/bin/python bench/bench_raw_options.py [--task camera] [--train-rows 1000] [--edge-rounds 4]

One offline replay with the real parts, not the live stack. The task's own models, trained as the
worker trains them (cloud_worker/config.py TrainSettings defaults) on the same labelled frames: the
edge (version 1 on the seed, then ``--edge-rounds`` whole-model versions), the cloud model at the
cloud contract's resolution, and the cloud's feature section on the edge's features
(cloud_worker/models/cloudmodels.py). Frames are JPEG-encoded at the task's quality and decoded again
before the cloud sees them, as on the wire; message sizes are those of the real containers
(``HardSample.encode``). The escalated samples are those a deployed agent would send: below the
task's threshold, at most the budget's share, most uncertain first. The live worker also distils
its cloud's answers on unlabelled frames into the edge; this replay does not, so its edge is weaker
than a long live run's.

For each option it reports, on the escalated samples: how often the cloud's answer is right, the
joint accuracy over every evaluated sample, the uplink bytes per escalation, how many escalations
need a second round trip, and how many a person at the console can see (only those whose sample
travelled). ``edge alone`` is the same samples answered by the edge, with no cloud at all.

The labelled frames are the seed and ``--train-rows`` stream frames drawn at random; the evaluated
ones are other stream frames (day and night), never trained on. Writes
``bench/results/bench_raw_options.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results"


def _escalated(conf: np.ndarray, threshold: float, budget: float) -> np.ndarray:
    """Indices a deployed agent would escalate: below the threshold, the budget's share at most,
    the most uncertain first (returned in stream order)."""
    below = np.flatnonzero(conf < threshold)
    cap = int(budget * len(conf))
    if len(below) > cap:
        below = below[np.argsort(conf[below], kind="stable")[:cap]]
    return np.sort(below)


def _request_size(task: str) -> int:
    """The cloud's "send me the sample" on the escalation's response topic: a Reply that defers,
    the smallest message the existing wire has for it (on-request is not on the wire today)."""
    from shared.protocol.schemas import Reply, dumps

    return len(dumps(Reply(task=task, sample=123456, label=0, confidence=0.5, defer=True, model="camera-cloud-3",
                           worker="worker-1", ts=time.time())))


@dataclass(frozen=True)
class Escalations:
    """Per escalated sample: whether each cloud answer is right, and what each message weighs."""

    cloud_ok: np.ndarray  # the cloud model on the sample (bool)
    feat_ok: np.ndarray  # the cloud's feature section on the edge's features (bool)
    feat_conf: np.ndarray  # the feature section's confidence: what "on request" asks by
    size_feat: np.ndarray  # bytes of the escalation without its sample
    size_raw: np.ndarray  # bytes of the escalation with it


def option(name: str, e: Escalations, use_raw: np.ndarray, requested: np.ndarray, request_bytes: int,
           answered_at_edge_ok: int, n_eval: int) -> dict:
    """One way of moving samples, scored: the cloud answers from the sample where ``use_raw``, from the
    features elsewhere; a requested sample costs the features first, then the request and the sample."""
    ok = np.where(use_raw, e.cloud_ok, e.feat_ok)
    sent = np.where(use_raw & ~requested, e.size_raw, e.size_feat) + np.where(requested, request_bytes + e.size_raw, 0)
    return {"option": name, "escalated_acc": round(float(ok.mean()), 4),
            "joint_acc": round((answered_at_edge_ok + int(ok.sum())) / n_eval, 4),
            "bytes_per_escalation": int(round(float(sent.mean()))),
            "second_round_trip": round(float(requested.mean()), 3),
            "seen_by_a_person": round(float(use_raw.mean()), 3)}


def options(e: Escalations, request_bytes: int, answered_at_edge_ok: int, n_eval: int,
            every: tuple[int, ...] = (2, 3, 5), taus: tuple[float, ...] = (0.6, 0.8, 0.9, 0.95)) -> list[dict]:
    n = len(e.cloud_ok)
    none = np.zeros(n, bool)
    args = (request_bytes, answered_at_edge_ok, n_eval)
    out = [option("features only (no sample)", e, none, none, *args),
           option("every escalation", e, ~none, none, *args)]
    out += [option(f"one in {k}", e, np.arange(n) % k == 0, none, *args) for k in every]
    for tau in taus:
        ask = e.feat_conf < tau
        out.append(option(f"on request (features below {tau})", e, ask, ask, *args))
    return out


def run(task_name: str, *, train_rows: int, eval_rows: int, epochs: int | None, edge_rounds: int, threads: int,
        seed: int) -> dict:
    import torch

    from cloud_worker.config import TrainSettings
    from cloud_worker.models import augment, nets, train
    from cloud_worker.models.calibrate import softmax
    from cloud_worker.models.cloudmodels import feature_head
    from lepton_tasks import load_task
    from shared.protocol import rawsample
    from shared.protocol.containers import HardSample
    from shared.protocol.rawsample import RawRows

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    task = load_task(task_name)
    d = task.dataset()
    dec = task.decision_defaults()
    rng = np.random.default_rng(seed)
    stream = d.stream.copy()
    rng.shuffle(stream)
    lab = np.concatenate([d.seed, np.sort(stream[:train_rows])])
    ev = np.sort(stream[train_rows:train_rows + eval_rows])
    y, ey = d.y[lab], d.y[ev]
    enc, quality = task.cloud_encoding, task.spec.cloud.quality

    def wire(idx: np.ndarray) -> list[np.ndarray]:
        return [rawsample.encode(r, enc, quality) for r in d.raw[idx]]

    def cloud_inputs(items: list[np.ndarray]) -> np.ndarray:  # what the worker makes of a sample as it travelled
        return task.preprocess_cloud_all(np.stack([rawsample.decode(b, rawsample.wire_encoding(enc)) for b in items]))

    t0 = time.perf_counter()
    lab_wire, ev_wire = wire(lab), wire(ev)
    ex, eex = task.preprocess_all(d.raw[lab]), task.preprocess_all(d.raw[ev])
    cx, ecx = cloud_inputs(lab_wire), cloud_inputs(ev_wire)
    prep_s = time.perf_counter() - t0

    timings = {}
    t = TrainSettings()
    t0 = time.perf_counter()
    # The edge as the worker makes it: version 1 on the seed, then whole-model versions on the labelled
    # frames at a third of the rate with augmentation (``edge_rounds`` of them, each continuing the last).
    edge = nets.build_edge(task)
    train.fit(edge, task.preprocess_all(d.raw[d.seed]), d.y[d.seed], epochs=t.bootstrap_epochs, lr=t.lr,
              batch=t.batch, device=cpu, seed=seed)
    train.fit(edge, ex, y, epochs=t.whole_epochs * edge_rounds, lr=t.lr / 3, batch=t.batch, device=cpu, seed=seed,
              augment=augment.for_kind(task.kind))
    timings["edge_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cloud = nets.build_cloud(task)  # the worker's first fit of its cloud model, with its schedule
    if isinstance(cloud, torch.nn.Module):
        train.fit(cloud, cx, y, epochs=t.cloud_epochs if epochs is None else epochs, lr=t.cloud_lr, batch=t.batch,
                  device=cpu, seed=seed, augment=augment.for_kind(task.kind), onecycle=True, smoothing=0.05)
        cloud_p = softmax(train.predict_logits(cloud, ecx, cpu))
    else:
        cloud.fit(cx, y)
        cloud_p = cloud.predict_proba(ecx)
    timings["cloud_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    feats = train.features_of(edge.backbone, ex, cpu)
    head = feature_head(edge.feat_dim, len(task.classes))
    train.fit_head(head, feats, y, epochs=t.head_epochs, device=cpu, seed=seed)
    efeat = train.features_of(edge.backbone, eex, cpu)
    feat_p = torch.softmax(train.logits_of(head.eval(), torch.as_tensor(efeat)), 1).detach().numpy()
    timings["features_s"] = time.perf_counter() - t0
    edge_p = softmax(train.predict_logits(edge, eex, cpu))

    esc = _escalated(edge_p.max(1), dec.threshold, dec.budget)
    n = len(esc)

    def msg(i: int, with_raw: bool) -> int:
        raw = RawRows.jpeg([bytes(ev_wire[i])]) if with_raw and enc == "jpeg" else (
            RawRows.tensor(ev_wire[i][None]) if with_raw else None)
        return len(HardSample("cam-1", "cam", task.name, 1, 1000 + int(i), 3, np.array([int(ev[i])], np.int64),
                              np.zeros((1, 0), np.float16), efeat[i][None].astype(np.float32),
                              edge_p[i][None].astype(np.float32), np.array([time.time()]), raw).encode())

    size_feat = np.array([msg(i, False) for i in esc])
    size_raw = np.array([msg(i, True) for i in esc])
    req = _request_size(task.name)
    edge_ok, cloud_ok, feat_ok = (p[esc].argmax(1) == ey[esc] for p in (edge_p, cloud_p, feat_p))
    answered_at_edge_ok = int((edge_p.argmax(1) == ey).sum() - edge_ok.sum())
    edge_row = {"option": "edge alone (no cloud)", "escalated_acc": round(float(edge_ok.mean()), 4),
                "joint_acc": round(float((edge_p.argmax(1) == ey).mean()), 4),
                "bytes_per_escalation": int(round(float(size_feat.mean()))), "second_round_trip": 0.0,
                "seen_by_a_person": 0.0}
    rows = options(Escalations(cloud_ok, feat_ok, feat_p[esc].max(1), size_feat, size_raw), req,
                   answered_at_edge_ok, len(ev))
    raw_every_frame = float(np.mean([len(b) for b in ev_wire]))
    return {
        "task": task.name, "labelled": int(len(lab)), "evaluated": int(len(ev)), "escalated": n,
        "threshold": dec.threshold, "budget": dec.budget, "encoding": enc, "quality": quality,
        "cloud_epochs": t.cloud_epochs if epochs is None else epochs, "edge_epochs": t.whole_epochs * edge_rounds,
        "threads": threads, "seed": seed,
        "holdout_free": "evaluated frames are stream frames never trained on (the task's holdout is not used)",
        "sample_bytes_mean": int(round(raw_every_frame)), "request_bytes": req,
        "edge_acc_all": round(float((edge_p.argmax(1) == ey).mean()), 4),
        "cloud_acc_all": round(float((cloud_p.argmax(1) == ey).mean()), 4),
        "features_acc_all": round(float((feat_p.argmax(1) == ey).mean()), 4),
        "options": [edge_row, *rows],
        "seconds": {"prep": round(prep_s, 1), **{k: round(v, 1) for k, v in timings.items()}},
    }


def table(r: dict) -> str:
    head = ("| option | right on escalated | joint accuracy | bytes per escalation | second round trip "
            "| a person can see |\n|---|---|---|---|---|---|\n")
    body = "".join(f"| {o['option']} | {o['escalated_acc']:.3f} | {o['joint_acc']:.3f} | {o['bytes_per_escalation']:,} "
                   f"| {100 * o['second_round_trip']:.0f} % | {100 * o['seen_by_a_person']:.0f} % |\n"
                   for o in r["options"])
    return (f"{r['task']}: {r['escalated']} of {r['evaluated']} evaluated stream frames escalated (threshold "
            f"{r['threshold']}, budget {r['budget']}); models trained on {r['labelled']} labelled frames; every "
            f"frame alone as {r['encoding']} q{r['quality']}: {r['sample_bytes_mean']:,} B. On all evaluated frames: "
            f"edge {r['edge_acc_all']:.3f}, cloud {r['cloud_acc_all']:.3f}, cloud's feature section "
            f"{r['features_acc_all']:.3f}.\n\n" + head + body)


def chart(runs: list[dict]) -> str:
    """Right on escalated samples against bytes per escalation: each family of options a line from
    "features only" (no sample) up, one per seed (the second dashed)."""
    from lepton_views.report import standalone_svg
    from lepton_views.svgplot import Chart, color

    c = Chart("Escalated frames: cloud right vs uplink (dashed: second seed)", x_label="bytes per escalation",
              y_label="right on escalated", width=640, height=330, y_range=(0.4, 1.0))
    for k, r in enumerate(runs):
        rows = {o["option"]: o for o in r["options"]}
        start = rows["features only (no sample)"]
        for i, (label, prefix) in enumerate((("one in N", "one in "),
                                             ("on request", "on request"))):
            pts = sorted([start, *(o for o in r["options"] if o["option"].startswith(prefix))],
                         key=lambda o: o["bytes_per_escalation"])
            if prefix == "one in ":
                pts.append(rows["every escalation"])
            c.line([o["bytes_per_escalation"] for o in pts], [o["escalated_acc"] for o in pts], label, color(i),
                   dash="5 4" if k else None)
        for j, name in enumerate(("every escalation", "edge alone (no cloud)")):
            c.points([rows[name]["bytes_per_escalation"]], [rows[name]["escalated_acc"]], name.split(" (")[0],
                     color(2 + j))
    return standalone_svg(c.render())


def main() -> int:
    cleanup.guard()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", default="camera")
    p.add_argument("--train-rows", type=int, default=1000)
    p.add_argument("--eval-rows", type=int, default=3000)
    p.add_argument("--epochs", type=int, default=None, help="cloud model epochs (default: the worker's)")
    p.add_argument("--edge-rounds", type=int, default=4, help="whole-model edge versions after the first")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1],
                   help="one run per seed: which frames are labelled, and the models' initialisation")
    p.add_argument("--out", type=Path, default=RESULTS / "bench_raw_options.json")
    p.add_argument("--redraw", action="store_true", help="write the .md and .svg again from --out, run nothing")
    args = p.parse_args()
    if args.redraw:
        rec = json.loads(args.out.read_text())
    else:
        t0 = time.time()
        runs = []
        for seed in args.seeds:
            r = run(args.task, train_rows=args.train_rows, eval_rows=args.eval_rows, epochs=args.epochs,
                    edge_rounds=args.edge_rounds, threads=args.threads, seed=seed)
            print(f"seed {seed}: " + table(r), flush=True)
            runs.append(r)
        rec = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
               "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
               "runs": runs}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(rec, indent=2) + "\n")
    svg = args.out.with_suffix(".svg")
    svg.write_text(chart(rec["runs"]))
    args.out.with_suffix(".md").write_text(
        f"# How raw samples travel ({rec['when']}, {rec['machine']})\n\n![right vs bytes]({svg.name})\n\n"
        + "\n".join(f"## seed {r['seed']}\n\n{table(r)}" for r in rec["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
