#!/usr/bin/env python
"""Fault benchmark: what survives a broker SIGKILL while a backlog waits for a stopped bridge.

    .venv/bin/python bench/bench_faults.py [--runs 3] [--backlog 21] [--fps 25] [--stop-worker]
                                           [--no-custody] [--out bench/results/bench_faults.json]

Each run is the scenario of issue 10: the whole stack as real processes on the project's own
mosquitto.conf (30 s autosave); 2 agents replay digits at --fps; the bridge (and with
--stop-worker the worker too) gets SIGTERM so a backlog queues in its durable session for
--backlog seconds; the broker is SIGKILLed one second before its next autosave and restarted;
bridge and worker are restarted. An always-connected observer records every QoS 1 message the
broker accepted from the agents and everything the bridge handed on (hub/infer, hub/batch).

Reported per run, per (device, boot, seq): accepted, lost (an escalation never on hub/infer, a
feature batch with a row never on hub/batch), duplicate rows on hub/batch, and with custody what
the agents still held and released. --no-custody turns the agents' custody off (they delete on
PUBACK, as before custody existed): the baseline, measured in the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

from tests.e2e.faultstack import FaultStack  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_faults.json"


def one_run(args: argparse.Namespace, workdir: Path) -> dict:
    agent = {"outbox": {"custody": not args.no_custody, "custody_timeout_s": args.custody_timeout}}
    if args.legacy:
        agent = {}  # a build from before custody existed has no such settings
    stack = FaultStack(workdir, agents=2, fps=args.fps, agent=agent)
    try:
        stack.start()
        time.sleep(args.warmup)
        t = stack.crash_broker_with_backlog(backlog_s=args.backlog,
                                            also_stop=("worker",) if args.stop_worker else ())
        time.sleep(args.drain)
        codes = stack.shutdown()
        time.sleep(0.5)
        rep = stack.observed.report()
        rep.pop("lost_keys")
        return {**rep, **t, "exit_codes": codes}
    except BaseException:
        stack.kill_all()
        raise


def main() -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--backlog", type=float, default=21.0, help="seconds the bridge is down before the crash")
    p.add_argument("--fps", type=float, default=25.0)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--drain", type=float, default=40.0, help="seconds after the restart before judging")
    p.add_argument("--custody-timeout", type=float, default=10.0)
    p.add_argument("--stop-worker", action="store_true")
    p.add_argument("--no-custody", action="store_true")
    p.add_argument("--legacy", action="store_true", help="the checkout this runs from predates custody: give its agents no custody settings "
                   "(with the current build this means custody at its defaults; the baseline is --no-custody)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    runs = []
    for i in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="lepton-fault-") as d:
            r = one_run(args, Path(d))
        runs.append(r)
        print(f"run {i + 1}: accepted {r['accepted']} lost {r['lost']} dup rows {r['duplicate_rows_on_hub_batch']} "
              f"backlog {r['backlog_s']:.1f}s exit {r['exit_codes']}", flush=True)
    total = {k: sum(r["accepted"].get(k, 0) for r in runs) for k in ("event", "hard", "feat")}
    lost = {k: sum(r["lost"][k] for r in runs) for k in ("hard", "feat")}
    print(f"\n{'':>10} {'accepted':>10} {'lost':>8}")
    for k in ("hard", "feat"):
        print(f"{k:>10} {total[k]:>10} {lost[k]:>8}")
    out = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                       "loadavg": Path("/proc/loadavg").read_text().split()[:3]},
           "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
           "runs": runs, "accepted": total, "lost": lost}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
