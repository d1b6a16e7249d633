#!/usr/bin/env python
"""Learning benchmark: every shipped scenario, headless, through the whole stack; the scoreboard per scenario.

    .venv/bin/python bench/bench_learning.py [--tasks camera industrial traffic health]
                                            [--duration 300] [--durations camera=600] [--fps 10] [--agents 2]
                                            [--labeller random|queue] [--label-fraction 0.3] [--person-rate 3]
                                            [--no-reference] [--out bench/results/bench_learning.json]
                                            [--markdown FILE] [--keep DIR]

Each scenario is one `lepton up --task NAME` run (real mosquitto, bridge, worker, agents replaying the
task's stream, and a labeller: `random` corrects 30% (`--label-fraction`) of all predictions after 2 s, as an app with its own
ground truth would (the default for windows, every one of which travels with its feature row); `queue` is
a scripted person labelling the console's queue of escalated samples in its order, `--person-rate` a
second (the default for frames: a person labels what they can see), whose
summary holds the scoreboard
(lepton_views/scoreboard.py): per model version the holdout accuracy and macro-F1 of edge-only,
cloud-only and joint decisions, the escalation ratio, edge against cloud on the escalated samples,
the field accuracies against ground truth, uplink bytes per sample against the raw samples, and for
a task with a drift phase the labels and seconds it took to recover. The targets of docs/TASKS.md
are checked per scenario; a missed one says so. `user-devices` is a user's own task: a CSV of windows
and a spec with nothing tuned (bench/usertask.py). After each live run, the reference method is trained
offline on the same split (bench/reference.py: MiniRocket for windows, the cloud CNN on every non-holdout
frame for images) and scored on the same holdout. Writes JSON, prints the markdown tables (and writes
them to --markdown for the README and docs).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

from bench import usertask  # noqa: E402
from bench.reference import reference  # noqa: E402
from lepton_views.scoreboard import headline, markdown  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_learning.json"
SCENARIOS = ("camera", "industrial", "traffic", "health", "user-devices")
USER_TASK = "user-devices"  # a user's own CSV task with a defaults-only spec (bench/usertask.py)


def run_one(task: str, args: argparse.Namespace, workdir: Path) -> dict:
    summary = workdir / "summary.json"
    ref = str(usertask.write(workdir / "usertask")) if task == USER_TASK else task
    t0 = time.monotonic()
    duration = args.durations.get(task, args.duration)
    mode = args.labeller or _default_labeller(ref)
    labeller = ["--labeller", mode] + (["--person-rate", str(args.person_rate)] if mode == "queue" else
                                       ["--label-fraction", str(args.label_fraction)])
    proc = subprocess.run([sys.executable, "-m", "lepton_cli.main", "up", "--task", ref, "--duration",
                           str(duration), "--agents", str(args.agents), "--fps", str(args.fps), "--no-tui",
                           *labeller, "--workdir", str(workdir / "stack"), "--summary", str(summary)],
                          cwd=ROOT, capture_output=True, text=True, timeout=duration + 300)
    if proc.returncode != 0 or not summary.exists():
        return {"task": task, "error": f"lepton up exited {proc.returncode}: {proc.stderr[-2000:]}"}
    s = json.loads(summary.read_text())
    boards = [b for b in s.get("scoreboard", []) if b["task"] == task]
    return {"task": task, "spec": ref, "duration_s": duration, "labeller_mode": mode, "wall_s": round(time.monotonic() - t0, 1),
            "exit_codes": s.get("exit_codes"), "board": boards[0] if boards else None,
            "predictions": s.get("predictions"), "labeller": s.get("labeller"), "models": s.get("models"),
            "workers": s.get("workers"), "qos1_seq_gaps": s.get("qos1_seq_gaps")}


def _default_labeller(ref: str) -> str:
    """Frames: a person at the console's queue (a person can label only what they see, the escalated
    frames that came with their samples); windows: an app correcting a share of all samples, since every
    window travels with its feature row."""
    from lepton_tasks import load_task

    return "queue" if load_task(ref).kind == "image" else "random"


def _durations(text: str) -> dict[str, float]:
    out = {}
    for part in filter(None, text.split(",")):
        name, _, secs = part.partition("=")
        out[name.strip()] = float(secs)
    return out


def main() -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tasks", nargs="+", default=list(SCENARIOS))
    p.add_argument("--duration", type=float, default=300.0, help="seconds per scenario")
    p.add_argument("--durations", type=_durations, default={}, help="per scenario, e.g. camera=600,traffic=240")
    p.add_argument("--labeller", choices=("random", "queue"), default=None,
                   help="default: queue for image tasks (a person at the console), random for windows")
    p.add_argument("--label-fraction", type=float, default=0.3,
                   help="random labeller: the share of samples labelled (more of the stream labelled: nearer "
                        "the reference, which learns from all of it)")
    p.add_argument("--person-rate", type=float, default=3.0, help="labels a second of the queue labeller")
    p.add_argument("--no-reference", action="store_true", help="skip the offline reference methods")
    p.add_argument("--fps", type=float, default=10.0)
    p.add_argument("--agents", type=int, default=2)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--markdown", type=Path, default=None)
    p.add_argument("--keep", type=Path, default=None,
                   help="copy each run's summary.json here as TASK.json (`lepton report` plots one)")
    args = p.parse_args()
    runs = []
    for task in args.tasks:
        with tempfile.TemporaryDirectory(prefix=f"lepton-learn-{task}-") as d:
            r = run_one(task, args, Path(d))
            if args.keep and (Path(d) / "summary.json").exists():
                args.keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(Path(d) / "summary.json", args.keep / f"{task}.json")
            if not args.no_reference:  # after the live run: the two must not share the CPU
                r["reference"] = reference(r["spec"])
                if r.get("board"):
                    r["board"]["reference"] = r["reference"]
        runs.append(r)
        status = r.get("error") or ", ".join(f"{k}: {'met' if v['met'] else 'MISSED'}"
                                             for k, v in (r["board"] or {}).get("targets", {}).items())
        print(f"{task}: {status}", flush=True)
    boards = [r["board"] for r in runs if r.get("board")]
    table = headline(boards) + "\n\n" + markdown(boards)
    print("\n" + table)
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "ran_at": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()), "runs": runs}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    if args.markdown:
        args.markdown.write_text(table + "\n")
    print(f"wrote {args.out}")
    return 0 if all("error" not in r for r in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
