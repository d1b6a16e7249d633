#!/usr/bin/env python
"""The reference a task's live figures are measured against: a strong method trained offline on the same split.

    .venv/bin/python bench/reference.py --task camera [--max-rows 5000] [--epochs 15] [--threads 2] [--seed 0 ...]

Windows: MiniRocket with a ridge classifier (the cloud's default window model, cloud_worker/models/rocket.py)
trained on the seed and the whole stream, every sample labelled. Frames: the cloud model of the task
(cloud_worker/models/nets.py image_cloud at the cloud contract's resolution, with the worker's augmentation
and schedule) trained on the seed and every stream frame. Both are scored on the task's holdout, the
same samples the worker's gate and the scoreboard use. This is the ceiling the live system (which
learns from what its labeller and its escalations give it) is measured against.

More than ``--max-rows`` training samples are subsampled at random (said in the result).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)


def reference(task_name: str, *, max_rows: int = 5000, epochs: int = 15, threads: int = 2, seed: int = 0) -> dict:
    import torch

    from cloud_worker.learning.scoring import macro_f1
    from cloud_worker.models import augment, nets, train
    from cloud_worker.models.calibrate import softmax
    from cloud_worker.models.rocket import MiniRocketClassifier
    from lepton_tasks import load_task

    torch.set_num_threads(threads)
    task = load_task(task_name)
    d = task.dataset()
    pool = np.concatenate([d.seed, d.stream])
    subsampled = len(pool) > max_rows
    if subsampled:
        pool = np.sort(np.random.default_rng(seed).choice(pool, max_rows, replace=False))
    t0 = time.perf_counter()
    x = task.preprocess_cloud_all(d.raw[pool])
    hx = task.preprocess_cloud_all(d.raw[d.holdout])
    y, hy = d.y[pool], d.y[d.holdout]
    prep_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    model = nets.build_cloud(task)
    if isinstance(model, torch.nn.Module):
        method = f"cloud CNN ({type(model).__name__}, {x.shape[1:]} input), {epochs} epochs"
        train.fit(model, x, y, epochs=epochs, lr=3e-3, batch=32, device=torch.device("cpu"), seed=seed,
                  augment=augment.for_kind(task.kind), onecycle=True, smoothing=0.05)
        probs = softmax(train.predict_logits(model, hx, torch.device("cpu")))
    else:
        method = "MiniRocket + ridge" if isinstance(model, MiniRocketClassifier) else type(model).__name__
        model.fit(x, y)
        probs = model.predict_proba(hx)
    pred = probs.argmax(1)
    return {"task": task.name, "method": method, "trained_on": "seed + stream, every sample labelled",
            "rows": int(len(y)), "subsampled_from": int(len(d.seed) + len(d.stream)) if subsampled else None,
            "holdout_n": int(len(hy)), "holdout_acc": round(float((pred == hy).mean()), 4),
            "holdout_macro_f1": round(macro_f1(hy, pred, len(task.classes)), 4),
            "train_s": round(time.perf_counter() - t0, 1), "prep_s": round(prep_s, 1), "threads": threads}


def main() -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--task", action="append", required=True)
    p.add_argument("--max-rows", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, action="append",
                   help="which random subsample of --max-rows (and the training seed); repeat for several")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    out = [{**reference(t, max_rows=args.max_rows, epochs=args.epochs, threads=args.threads, seed=seed), "seed": seed}
           for t in args.task for seed in (args.seed or [0])]
    for r in out:
        print(json.dumps(r))
    if args.out:
        args.out.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
