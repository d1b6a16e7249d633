#!/usr/bin/env python
"""Custody benchmark: what the custody interval saves (messages/s, bridge CPU) and what it costs after a crash.

    .venv/bin/python bench/bench_custody.py [--devices 1000] [--intervals 1,2,5,10] [--seconds 6]
                                            [--crash-intervals 1,5] [--skip fleet,crash] [--out FILE]

The bridge tells each device with news, on ``edge/{device}/custody``, which of its messages reached
their final fate (hub_bridge/custody_notes.py), at most once per ``custody.interval_s``; the agent
deletes them from its outbox then, and sends again, after ``custody_timeout_s``, what no custody
message released (edge_agent/sender.py). A longer interval means fewer custody messages; if the
bridge dies, every message in custody whose device was not told yet is sent again and processed
again downstream (the copies are deduplicated by the worker, but cost their trip).

1. ``fleet``: the bridge bench's simulated fleet (bench/bridge_fleet.py: --devices at 10 Hz, a worker
   acknowledging fused batches) once per interval: custody messages per second, the bridge's CPU,
   and, sampled twice a second from the bridge's gauges, the messages in custody not yet told
   (``custody.untold``): what a crash at that moment would make the devices send again.
2. ``crash``: real processes (tests/e2e/faultstack.py: broker, worker, bridge, 2 agents replaying
   digits at --fps): the bridge is killed with SIGKILL and restarted; the agents' own counters then
   say how many messages they sent again (``outbox.resent.*``) and the observer how many copies went
   downstream, per interval.

Writes bench/results/bench_custody.json. The default takes ~4 minutes; the numbers in docs/BRIDGE.md
("Custody interval") come from it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bridge_fleet  # noqa: E402
import cleanup  # noqa: E402  (bench/cleanup.py)
from bridge_subjects import loadavg  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_custody.json"


def fleet_phase(args: argparse.Namespace) -> list[dict]:
    from shared.transport.broker import Broker

    out = []
    broker = Broker(Path(tempfile.mkdtemp(prefix="bench-custody-"))).start()
    # Intervals interleaved, rep after rep, so each rep's rows share the box's load; a run lasts at
    # least 2.5 intervals, so the count of untold messages reaches its steady sawtooth.
    plan = [(rep, i) for rep in range(args.reps) for i in args.intervals]
    try:
        for rep, interval in plan:
            # A number: that fixed spacing (no rate cap). "auto": the bridge's defaults (hub_bridge/config.py).
            fixed = interval != "auto"
            custody = {"interval_s": float(interval), "max_rate": None, "max_interval_s": float(interval)} if fixed else {}
            longest = float(interval) if fixed else 10.0
            f = bridge_fleet.fleet(broker.port, args.devices, 10.0, max(args.seconds, 2.5 * longest),
                                   broker_pid=broker.proc.pid if broker.proc else None, custody=custody, boot=rep + 1)
            row = {"interval_s": interval, "effective_interval_s": f["custody_interval_s"], "rep": rep + 1, "devices": args.devices, "measured": f["measured"],
                   "sustained": f["sustained"], "offered_msg_s": f["offered_msg_s"],
                   "qos1_msg_s": round(sum(v for k, v in f["sent"].items() if k != "telemetry") / f["seconds"]),
                   "custody_msg_s": f["custody_msgs_s"], "bridge_cpu_percent": f["bridge_cpu_percent"],
                   "custody_cpu_percent": f["custody_cpu_percent"], "seconds": f["seconds"],
                   "untold": f["custody_untold"], "in_process": f["custody_in_process"],
                   "escalation_p99_ms": f["escalation_end_to_end_ms"]["p99_ms"], "loadavg": f["loadavg"]}
            out.append(row)
            print(f"interval {interval} (in effect {f['custody_interval_s']} s), run {rep + 1}: custody {row['custody_msg_s']:,} msg/s "
                  f"({row['custody_msg_s'] / max(1, row['qos1_msg_s']):.0%} of the {row['qos1_msg_s']:,} QoS 1 msg/s "
                  f"offered), bridge CPU {row['bridge_cpu_percent']}% of which custody notes "
                  f"{row['custody_cpu_percent']}%, untold mean {row['untold']['mean']:,} "
                  f"max {row['untold']['max']:,}, in process mean {row['in_process']['mean']:,}"
                  f"{'' if f['measured'] else ' (generator fell behind: not measured)'}; load {row['loadavg']}",
                  flush=True)
    finally:
        broker.stop()
    return out


def crash_run(args: argparse.Namespace, interval: float, workdir: Path) -> dict:
    from tests.e2e.faultstack import FaultStack

    spacing = {"interval_s": interval, "max_rate": None, "max_interval_s": interval}  # fixed, for the comparison
    stack = FaultStack(workdir, agents=2, fps=args.fps, bridge={"custody": spacing},
                       agent={"outbox": {"custody_timeout_s": args.custody_timeout}})
    try:
        stack.start()
        time.sleep(args.warmup)

        def resent() -> int:
            with stack.observed.lock:
                return sum(v for t in stack.observed.telemetry.values() for k, v in t.counters.items()
                           if k.startswith("outbox.resent."))

        before = resent()
        gauges = dict(stack.observed.hub_status.get("gauges") or {})
        stack.procs["bridge"].signal(signal.SIGKILL, 10)
        killed = time.monotonic()
        stack.resume("bridge")
        # Long enough for the agents to give up waiting for custody and send again, and report it.
        time.sleep(args.custody_timeout + args.after)
        after = resent()
        codes = stack.shutdown()
        time.sleep(0.5)
        rep = stack.observed.report()
        return {"interval_s": interval, "custody_timeout_s": args.custody_timeout, "fps": args.fps, "agents": 2,
                "untold_before_kill": gauges.get("custody.untold"), "in_process_before_kill":
                    gauges.get("custody.in_process"), "resent_after_crash": after - before,
                "duplicate_infer": rep["duplicate_infer"], "duplicate_rows_on_hub_batch": rep["duplicate_rows_on_hub_batch"],
                "lost": rep["lost"], "accepted": rep["accepted"], "waited_s": round(time.monotonic() - killed, 1),
                "exit_codes": {k: v for k, v in codes.items() if k != "bridge"}}
    except BaseException:
        stack.kill_all()
        raise


def crash_phase(args: argparse.Namespace) -> list[dict]:
    out = []
    for interval in args.crash_intervals:
        with tempfile.TemporaryDirectory(prefix="lepton-custody-") as d:
            r = crash_run(args, interval, Path(d))
        out.append(r)
        print(f"crash, interval {interval:g} s: untold at the kill {r['untold_before_kill']}, in process "
              f"{r['in_process_before_kill']}; the agents sent {r['resent_after_crash']} messages again; copies "
              f"downstream: {r['duplicate_infer']} escalations, {r['duplicate_rows_on_hub_batch']} rows; lost "
              f"{r['lost']}", flush=True)
    return out


def main() -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, default=1000, help="simulated devices at 10 Hz (fleet phase)")
    p.add_argument("--intervals", default="1,2,5,10,auto",
                   help="custody.interval_s values, comma-separated, and auto: the bridge's default spacing (fleet)")
    p.add_argument("--seconds", type=float, default=6.0, help="seconds per fleet run (at least 2.5 intervals)")
    p.add_argument("--reps", type=int, default=1, help="runs per interval (fleet), interleaved")
    p.add_argument("--crash-intervals", default="1,5", help="custody.interval_s values for the crash runs")
    p.add_argument("--fps", type=float, default=25.0, help="frames per second per agent (crash runs)")
    p.add_argument("--custody-timeout", type=float, default=10.0, help="the agents' custody_timeout_s (crash runs)")
    p.add_argument("--warmup", type=float, default=8.0, help="seconds of traffic before the kill")
    p.add_argument("--after", type=float, default=8.0, help="seconds after custody_timeout_s before counting")
    p.add_argument("--skip", default="", help="phases to skip: fleet, crash")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args()
    args.intervals = [x if x == "auto" else float(x) for x in args.intervals.split(",") if x]
    args.crash_intervals = [float(x) for x in args.crash_intervals.split(",") if x]
    skip = set(args.skip.split(",")) - {""}
    t0 = time.monotonic()
    res: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                             "loadavg_start": loadavg()},
                 "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    if "fleet" not in skip:
        res["fleet"] = fleet_phase(args)
    if "crash" not in skip:
        res["crash"] = crash_phase(args)
    res["machine"]["loadavg_end"] = loadavg()
    res["bench_seconds"] = round(time.monotonic() - t0, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))
    print(f"total {res['bench_seconds']} s -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
