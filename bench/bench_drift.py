#!/usr/bin/env python
"""Nightfall without a teacher: which label-free adaptation brings the cloud CNN back on night frames.

    .venv/bin/python bench/bench_drift.py [--train-rows 200] [--epochs 25] [--seeds 0] [--append]

Offline, on the camera task's own frames and split (lepton_tasks: seed and day holdout from the day
frames, the night phase from ``Dataset.drift_at`` on). The cloud CNN is trained as the worker trains
its first one (cloud_worker/models/cloudmodels.py ``CloudTrainer.raw``: strong augmentation, one-cycle,
label smoothing 0.05) on the seed plus ``--train-rows`` labelled day frames, at the cloud contract's
resolution after the task's JPEG wire encoding. ``--epochs`` defaults below the worker's 60 so a run
fits a few minutes of a loaded 2-core box; the table says how many were used.

Then, without a single night label, on ``--pool`` unlabelled night frames:

- **none**: the day model as it is;
- **AdaBN (M)**: batch-norm statistics re-estimated on M night frames (Li et al. 2016);
- **AdaBN day+night (M)**: statistics re-estimated on M night frames and as many day frames, one model
  for both;
- **per-domain BN (M)**: the AdaBN (M) copy answers night frames, the day model day frames (needs to
  know the domain: a drift detector per device);
- **Tent**: AdaBN, then entropy minimisation of the BN affine parameters (Wang et al. 2021);
- **pseudo-labels**: the AdaBN model labels the pool; its confident answers (>= ``--tau``) join the
  labelled day frames in a short fine-tune with the worker's strong augmentation (FixMatch's
  confidence threshold and augmentation consistency, Sohn et al. 2020, done offline); its BN
  statistics then mix day and night, so it is also scored with AdaBN on the pool after it.

The per-domain row also records the guard's verdict (cloud_worker/models/adapt.py ``judge``), from
the pool and the day holdout only, as the live worker would have it, and its verdict on the AdaBN
copy serving day frames too.

Reference ceiling: the day model refreshed as the worker refreshes it (``cloud_refresh_epochs`` at a
third of the rate) on the labelled day frames plus ``--night-labelled`` *labelled* night frames.

Scored on held-out night frames (never in the pool, never labelled) and on the task's day holdout;
metric: accuracy. ``seconds`` is the adaptation's wall time on the machine the run names.
Writes ``bench/results/bench_drift.{json,md}``.
"""

from __future__ import annotations

import argparse
import copy
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


def _bn_layers(model):
    from torch import nn

    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def tent(model, x: np.ndarray, *, steps: int, lr: float, batch: int, seed: int):
    """Entropy minimisation of the BN affine parameters on unlabelled ``x``; BN on batch statistics
    while adapting (Tent), the running statistics kept as the cumulative mean over the batches seen."""
    import torch

    m = copy.deepcopy(model).eval()
    bns = _bn_layers(m)
    for p in m.parameters():
        p.requires_grad_(False)
    params = []
    for bn in bns:
        bn.train()
        bn.reset_running_stats()
        bn.momentum = None
        params += [bn.weight, bn.bias]
        bn.weight.requires_grad_(True)
        bn.bias.requires_grad_(True)
    opt = torch.optim.Adam(params, lr=lr)
    gen = torch.Generator().manual_seed(seed)
    xt = torch.as_tensor(x)
    for _ in range(steps):
        idx = torch.randperm(len(xt), generator=gen)[:batch]
        p = torch.softmax(m(xt[idx].float()), 1)
        loss = -(p * torch.log(p.clamp_min(1e-8))).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    for bn in bns:
        bn.momentum = 0.1
    return m.eval()


def pseudo_label(model, teacher_p: np.ndarray, x_pool: np.ndarray, x_lab: np.ndarray, y_lab: np.ndarray, *,
                 tau: float, epochs: int, lr: float, batch: int, seed: int):
    """Fine-tune a copy on the labelled frames plus the pool frames the teacher is sure of (>= tau), with
    the worker's strong augmentation: the student must give the teacher's answer on a perturbed frame."""
    import torch

    from cloud_worker.models import augment, train

    keep = teacher_p.max(1) >= tau
    m = copy.deepcopy(model)
    x = np.concatenate([x_lab, x_pool[keep]])
    y = np.concatenate([y_lab, teacher_p[keep].argmax(1)])
    train.fit(m, x, y, epochs=epochs, lr=lr, batch=batch, device=torch.device("cpu"), seed=seed,
              augment=augment.image, onecycle=True, smoothing=0.05)
    return m, keep


def run(*, train_rows: int, night_labelled: int, pool: int, eval_night: int, epochs: int, tau: float,
        threads: int, seed: int, adabn_sizes: tuple[int, ...]) -> dict:
    import torch

    from cloud_worker.config import TrainSettings
    from cloud_worker.models import augment, nets, train
    from cloud_worker.models.adapt import adapt_bn, judge
    from cloud_worker.models.calibrate import softmax
    from lepton_tasks import load_task
    from shared.protocol import rawsample

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    t = TrainSettings()
    task = load_task("camera")
    d = task.dataset()
    rng = np.random.default_rng(seed)
    day_stream, night = d.stream[:d.drift_at].copy(), d.stream[d.drift_at:].copy()
    rng.shuffle(day_stream)
    rng.shuffle(night)
    lab = np.concatenate([d.seed, np.sort(day_stream[:train_rows])])
    pool_i = night[:pool]
    ev_i = night[pool:pool + eval_night]
    nl_i = night[pool + eval_night:pool + eval_night + night_labelled]
    enc, quality = task.cloud_encoding, task.spec.cloud.quality

    def cloud_x(idx: np.ndarray) -> np.ndarray:  # what the worker makes of frames as they travelled
        wire = [rawsample.encode(r, enc, quality) for r in d.raw[idx]]
        return task.preprocess_cloud_all(np.stack([rawsample.decode(b, rawsample.wire_encoding(enc)) for b in wire]))

    t0 = time.perf_counter()
    x_lab, x_pool, x_ev, x_nl, x_hold = (cloud_x(i) for i in (lab, pool_i, ev_i, nl_i, d.holdout))
    y_lab, y_pool, y_ev, y_nl, y_hold = (d.y[i] for i in (lab, pool_i, ev_i, nl_i, d.holdout))
    prep_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    base = nets.build_cloud(task)
    train.fit(base, x_lab, y_lab, epochs=epochs, lr=t.cloud_lr, batch=t.batch, device=cpu, seed=seed,
              augment=augment.for_kind(task.kind), onecycle=True, smoothing=0.05)
    base_s = time.perf_counter() - t0
    before = {k: v.clone() for k, v in base.state_dict().items()}

    def probs(m, x):
        return softmax(train.predict_logits(m, x, cpu))

    def acc(m, x, y) -> float:
        return round(float((probs(m, x).argmax(1) == y).mean()), 4)

    rows: list[dict] = []

    def row(method: str, m, seconds: float, **extra) -> dict:
        r = {"method": method, "night_acc": acc(m, x_ev, y_ev), "day_acc": acc(m, x_hold, y_hold),
             "seconds": round(seconds, 2), **extra}
        rows.append(r)
        print(f"  {method}: night {r['night_acc']:.3f}  day {r['day_acc']:.3f}  {r['seconds']} s", flush=True)
        return r

    none = row("none (day model)", base, 0.0)
    adapted = {}
    for m_size in adabn_sizes:
        t0 = time.perf_counter()
        adapted[m_size] = adapt_bn(base, x_pool[:m_size])
        row(f"AdaBN (M={m_size})", adapted[m_size], time.perf_counter() - t0)
    big = max(adabn_sizes)
    r = next(r for r in rows if r["method"] == f"AdaBN (M={big})")
    # The guard, as the worker would run it: on the pool only (no night label), and the day holdout
    # of what serves day frames (the day model, under per-domain BN).
    day_p = probs(base, x_hold)
    v = judge(probs(adapted[big], x_pool[:big]), day_p, day_p, y_hold)
    single = judge(probs(adapted[big], x_pool[:big]), day_p, probs(adapted[big], x_hold), y_hold)
    rows.append({"method": f"per-domain BN (M={big}: AdaBN at night, day model by day)",
                 "night_acc": r["night_acc"], "day_acc": none["day_acc"], "seconds": r["seconds"],
                 "guard": {"accepted": v.accepted, "agreement": round(v.agreement, 4), "confident": v.confident,
                           "entropy_new": round(v.entropy_new, 4), "reasons": list(v.reasons),
                           "single_model_accepted": single.accepted}})
    mix = min(big, len(x_lab))
    t0 = time.perf_counter()
    both = adapt_bn(base, np.concatenate([x_pool[:mix], x_lab[:mix]]))
    row(f"AdaBN day+night (M={mix} + {mix} day)", both, time.perf_counter() - t0)
    t0 = time.perf_counter()
    tented = tent(base, x_pool, steps=20, lr=1e-3, batch=64, seed=seed)
    row("Tent (20 steps of 64, BN affine, lr 1e-3)", tented, time.perf_counter() - t0)
    t0 = time.perf_counter()
    teacher_p = probs(adapted[big], x_pool[:big])
    student, keep = pseudo_label(adapted[big], teacher_p, x_pool[:big], x_lab, y_lab, tau=tau, epochs=3,
                                 lr=t.cloud_lr / 3, batch=t.batch, seed=seed)
    pl_right = float((teacher_p.argmax(1)[keep] == y_pool[:big][keep]).mean()) if keep.any() else 0.0
    pl_s = time.perf_counter() - t0
    row(f"pseudo-labels (AdaBN teacher, conf >= {tau}, 3 epochs)", student, pl_s,
        pseudo_labels=int(keep.sum()), pseudo_label_acc=round(pl_right, 4))
    # The student's BN statistics are a day and night mix, as AdaBN day+night's: give it the night's.
    t0 = time.perf_counter()
    row(f"pseudo-labels, then AdaBN (M={big}) at night", adapt_bn(student, x_pool[:big]),
        pl_s + time.perf_counter() - t0)
    t0 = time.perf_counter()
    ceiling = copy.deepcopy(base)
    train.fit(ceiling, np.concatenate([x_lab, x_nl]), np.concatenate([y_lab, y_nl]), epochs=t.cloud_refresh_epochs,
              lr=t.cloud_lr / 3, batch=t.batch, device=cpu, seed=seed, augment=augment.for_kind(task.kind),
              onecycle=True, smoothing=0.05)
    row(f"reference: {len(nl_i)} labelled night frames (refresh, {t.cloud_refresh_epochs} epochs)", ceiling,
        time.perf_counter() - t0)
    # Its BN statistics mix day and night too; AdaBN on the pool separates them again.
    row(f"reference, then AdaBN (M={big}) at night", adapt_bn(ceiling, x_pool[:big]), time.perf_counter() - t0)
    untouched = all(torch.equal(before[k], v) for k, v in base.state_dict().items())
    return {"seed": seed, "labelled_day": int(len(lab)), "epochs": epochs, "pool": int(len(pool_i)),
            "eval_night": int(len(ev_i)), "day_holdout": int(len(d.holdout)), "night_labelled": int(len(nl_i)),
            "threads": threads, "base_model_untouched": untouched,
            "seconds": {"prep": round(prep_s, 1), "train_day_model": round(base_s, 1)}, "rows": rows}


def table(r: dict) -> str:
    head = "| method | night accuracy | day holdout accuracy | seconds |\n|---|---|---|---|\n"
    body = "".join(f"| {o['method']} | {o['night_acc']:.3f} | {o['day_acc']:.3f} | {o['seconds']} |\n"
                   for o in r["rows"])
    pl = next((o for o in r["rows"] if "pseudo_labels" in o), None)
    note = (f"\nPseudo-labels kept: {pl['pseudo_labels']} of {r['pool']}, right {pl['pseudo_label_acc']:.3f}.\n"
            if pl else "")
    g = next((o["guard"] for o in r["rows"] if "guard" in o), None)
    if g and "entropy_new" in g:
        note += (f"\nGuard on per-domain BN: {'accepted' if g['accepted'] else 'refused'} (day agreement "
                 f"{g['agreement']:.3f} on {g['confident']} sure frames, entropy on the pool {g['entropy_new']:.3f} "
                 f"of uniform); on the AdaBN copy serving day frames too: "
                 f"{'accepted' if g['single_model_accepted'] else 'refused'}.\n")
    elif g:  # recorded by the first guard, which judged agreement and entropy on the new inputs
        note += (f"\nFirst guard on per-domain BN: {'accepted' if g['accepted'] else 'refused'}; agreement "
                 f"{g['agreement']:.3f} on the {g['confident']} pool frames the day model was sure of; mean "
                 f"entropy {g['entropy_before']:.3f} -> {g['entropy_after']:.3f}.\n")
    return (f"Seed {r['seed']}: cloud CNN trained on {r['labelled_day']} labelled day frames ({r['epochs']} epochs, "
            f"{r['seconds']['train_day_model']} s); night accuracy on {r['eval_night']} held-out night frames, day "
            f"accuracy on the task's {r['day_holdout']}-frame holdout; unlabelled pool {r['pool']} night "
            f"frames.\n\n" + head + body + note)


def main() -> int:
    cleanup.guard()
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--train-rows", type=int, default=200, help="labelled day frames beyond the seed")
    p.add_argument("--night-labelled", type=int, default=200, help="labelled night frames of the reference")
    p.add_argument("--pool", type=int, default=512, help="unlabelled night frames the methods may use")
    p.add_argument("--eval-night", type=int, default=400)
    p.add_argument("--epochs", type=int, default=25, help="day model epochs (the worker: 60)")
    p.add_argument("--tau", type=float, default=0.9, help="pseudo-label confidence threshold")
    p.add_argument("--adabn", type=int, nargs="+", default=[32, 128, 512], help="AdaBN pool sizes M")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--out", type=Path, default=RESULTS / "bench_drift.json")
    p.add_argument("--append", action="store_true", help="add these runs to those --out holds")
    args = p.parse_args()
    t0 = time.time()
    runs = []
    for seed in args.seeds:
        r = run(train_rows=args.train_rows, night_labelled=args.night_labelled, pool=args.pool,
                eval_night=args.eval_night, epochs=args.epochs, tau=args.tau, threads=args.threads, seed=seed,
                adabn_sizes=tuple(sorted(args.adabn)))
        print(table(r), flush=True)
        runs.append(r)
    rec = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t0)),
           "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}",
           "split": "camera task: seed + day stream frames labelled; night = the drift phase's frames; day holdout = "
                    "the task's holdout", "metric": "accuracy", "runs": runs}
    if args.append and args.out.exists():
        rec["runs"] = json.loads(args.out.read_text())["runs"] + runs
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rec, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(
        f"# Drift without labels ({rec['when']}, {rec['machine']})\n\n" + "\n".join(table(r) for r in rec["runs"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
