"""How far the learning tests' figures move with the CPU's floating-point kernels.

One machine cannot be another CPU, but torch can be made to use the kernels another CPU would get:
``ATEN_CPU_CAPABILITY`` (AVX-512, AVX2 or plain vector code) and ``ONEDNN_MAX_CPU_ISA``; numpy's
OpenBLAS is switched by ``OPENBLAS_CORETYPE``. Each setting runs in its own process (they are read at
import) through the scenarios of tests/cloud: v1 and the cloud model from the seed set, the two-round
head fine-tune of test_learning (the old split, 150 then 550 labels, and the one it uses now, 20 then
680), the cloud-taught candidate of test_distill, 400 labels (test_promote, the broker tests), and the
drift candidate. Figures are digits holdout accuracy (360 samples); gains are in holdout samples, where
the gate's margin (0.005) needs two.

    .venv/bin/python bench/bench_kernels.py [--only native,aten-avx2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

SETTINGS = {
    "native": {},
    "openblas-sandybridge": {"OPENBLAS_CORETYPE": "Sandybridge"},
    "aten-avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    "onednn-avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "all-low": {"OPENBLAS_CORETYPE": "Sandybridge", "ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_CBWR": "COMPATIBLE"},
}
HOLDOUT = 360


def scenarios() -> dict:
    """Run in the child process: every figure the learning tests' verdicts hinge on."""
    import torch

    torch.set_num_threads(1)  # as the tests do
    from cloud_worker.learning.learner import Learner
    from cloud_worker.registry import Registry
    from cloud_worker.releasing.keys import init_keys
    from cloud_worker.service import load_signer
    from lepton_tasks import load_task
    from shared.protocol.topics import Topics
    from tests.cloud.conftest import make_config
    from tests.cloud.helpers import answered, fused_batch

    root = Path(tempfile.mkdtemp(prefix="bench-kernels-"))
    try:
        keys = root / "keys"
        keys.mkdir()
        init_keys(keys)
        task = load_task("digits")
        stream = task.dataset().stream

        def learner(name: str, **over):
            c = make_config(root / name, keys, **over)
            lr = Learner(task, c, Registry(c.registry), load_signer(c), Topics(c.root), device=torch.device("cpu"),
                         publish=lambda e: None)
            if name != "template":
                shutil.copytree(root / "template" / "registry", c.registry)
                assert lr.load()
            return lr

        t = learner("template")
        t.bootstrap()
        t.ensure_cloud()
        t.close()
        out: dict = {"v1": t.deployed_acc, "cloud": t.cloud.accuracy,
                     "escalated_edge": t.worth["escalated_edge_acc"], "escalated_cloud": t.worth["escalated_cloud_acc"]}

        def gains(name: str, first: int, last: int) -> list[int]:
            lr = learner(name, gate={"margin": 0.0})  # both rounds published, so round two builds on round one
            g = []
            for r, (a, b) in enumerate(((0, first), (first, last))):
                lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, lr.version, stream[a:b], seq=r))
                d = lr.retrain("labels")
                g.append(round((d["candidate_acc"] - d["deployed_acc"]) * HOLDOUT))
            return g

        out["old_split_gains"] = gains("old", 150, 700)
        out["new_split_gains"] = gains("new", 20, 700)
        lr = learner("head400")
        lr.ingest_fused(fused_batch("digits", lr.deployed.onnx, 1, stream[:400]))
        out["head400"] = lr.retrain("labels")["candidate_acc"]
        lr = learner("distill", training={"whole_min_raw": 100})
        answered(lr, "digits", stream[:400])
        out["distill400"] = lr.retrain("manual")["candidate_acc"]
        lr = learner("drift", gate={"margin": 0.5},
                     triggers={"min_new_labels": 10_000, "drift_min_rows": 50, "cooldown_s": 0})
        fb = fused_batch("digits", lr.deployed.onnx, 1, stream[:80])
        fb = type(fb)(**{**{f: getattr(fb, f) for f in fb.__dataclass_fields__}, "edge_label": (fb.label + 1) % 10})
        lr.ingest_fused(fb)
        d = lr.retrain("drift")
        out["drift"] = d["candidate_acc"]
        out["drift_published"] = d["published"]
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_setting(name: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    env.update(SETTINGS[name])
    proc = subprocess.run([sys.executable, __file__, "--child"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: the child failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(results: dict[str, dict]) -> str:
    head = ("setting", "v1", "cloud", "150+550 gains", "20+680 gains", "400 labels", "distilled", "drift",
            "escalated edge/cloud")
    rows = [" | ".join(head), " | ".join("---" for _ in head)]
    for name, r in results.items():
        rows.append(" | ".join([name, f"{r['v1']:.3f}", f"{r['cloud']:.3f}", "+".join(map(str, r["old_split_gains"])),
                                "+".join(map(str, r["new_split_gains"])), f"{r['head400']:.3f}",
                                f"{r['distill400']:.3f}", f"{r['drift']:.3f}",
                                f"{r['escalated_edge']:.3f}/{r['escalated_cloud']:.3f}"]))
    return "\n".join(rows)


def cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    lines = info.read_text().splitlines() if info.exists() else []
    return next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), "unknown")


def main() -> None:
    cleanup.guard()  # SIGTERM / SIGHUP: the child running a setting is stopped too
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", help="comma-separated settings (default: all): " + ", ".join(SETTINGS))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        print(json.dumps(scenarios()))
        return
    names = a.only.split(",") if a.only else list(SETTINGS)
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        p.error(f"unknown setting(s): {', '.join(unknown)}")
    results = {n: run_setting(n) for n in names}
    import torch

    meta = {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "machine": os.uname().machine, "cpu": cpu_model(), "settings": {n: SETTINGS[n] for n in names}}
    print(table(results))
    out = REPO / "bench" / "results" / "bench_kernels.json"
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")
    print(f"wrote {out.relative_to(REPO)}")


if __name__ == "__main__":
    main()
