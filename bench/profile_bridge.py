#!/usr/bin/env python
"""Profile the hub bridge under a steady feature load with py-spy (sampling, all threads, GIL-aware).

    .venv/bin/python bench/profile_bridge.py [--rate 2500] [--seconds 12] [--out /tmp/bridge.raw]

Starts mosquitto, the bridge (``python -m hub_bridge``, custody ``worker``), a worker that
acknowledges every fused batch (``BatchAck``), and a load generator offering FeatureBatch
messages (the bench payload, QoS 1) at ``--rate``. py-spy records the bridge process; the
summary printed is self time and inclusive time per function (per thread and in all), plus the
bridge's CPU microseconds per message, read from /proc.
"""

from __future__ import annotations

import argparse
import collections
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bench_bridge as bb  # noqa: E402
import bridge_fleet  # noqa: E402
import cleanup  # noqa: E402  (bench/cleanup.py)


def proc_cpu_s(pid: int) -> tuple[float, float, int, int]:
    """(user s, system s, voluntary, involuntary context switches) of a process, all threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    vol = invol = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            for line in (task / "status").read_text().splitlines():
                if line.startswith("voluntary_ctxt_switches"):
                    vol += int(line.split()[1])
                elif line.startswith("nonvoluntary_ctxt_switches"):
                    invol += int(line.split()[1])
        except OSError:
            continue
    return int(fields[11]) / tick, int(fields[12]) / tick, vol, invol


def _short(frame: str, line: bool = False) -> str:
    """`func (path/file.py:12)` -> `func (file.py)` or `func (file.py:12)`."""
    if " (" not in frame:
        return frame
    func, _, where = frame.partition(" (")
    where = where.rstrip(")").rsplit("/", 1)[-1]
    return f"{func} ({where if line else where.split(':')[0]})"


def summarize(raw: Path, top: int = 30) -> str:
    """py-spy's raw format: one collapsed stack per line, `frame;frame;... count`."""
    self_t: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    threads: collections.Counter = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack:
            continue
        n = int(n)
        total += n
        frames = stack.split(";")
        threads[frames[0]] += n
        names = [_short(f) for f in frames[1:]]
        if names:
            self_t[_short(frames[-1], line=True)] += n
        for name in set(names):
            incl[name] += n
    out = [f"samples: {total}", "threads:"]
    out += [f"  {v / total:6.1%}  {k}" for k, v in threads.most_common()]
    out.append("self time:")
    out += [f"  {v / total:6.1%}  {k}" for k, v in self_t.most_common(top)]
    out.append("inclusive time:")
    out += [f"  {v / total:6.1%}  {k}" for k, v in incl.most_common(top)]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, default=2500.0, help="Feature messages per second offered.")
    ap.add_argument("--seconds", type=float, default=12.0, help="Seconds of load (and of recording).")
    ap.add_argument("--custody", choices=("worker", "broker"), default="worker")
    ap.add_argument("--fleet", type=int, default=0, help="Devices of a simulated fleet (10 Hz, the bench's mix) "
                                                         "instead of the feature flood.")
    ap.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "bridge-profile.raw")
    ap.add_argument("--gil", action="store_true", help="Sample only the thread holding the GIL (CPU in Python).")
    ap.add_argument("--no-spy", action="store_true", help="Only measure CPU per message.")
    args = ap.parse_args(argv)
    from shared.transport.broker import Broker

    work = Path(tempfile.mkdtemp(prefix="prof-bridge-"))
    broker = Broker(work).start()
    conf = work / "bridge.toml"
    conf.write_text(f'root = "{bb.BENCH_ROOT}"\nid = "prof"\nstatus_interval = 1.0\nsession_expiry = 0\n'
                    f'[mqtt]\nport = {broker.port}\n[custody]\nfeatures = "{args.custody}"\n'
                    f"[fusion]\nbatch_size = 256\nbatch_age = 0.2\nlabel_wait = 0.2\nwindow = 30\n")
    bridge = subprocess.Popen([sys.executable, "-m", "hub_bridge", "--config", str(conf), "--log-level", "WARNING"],
                              cwd=ROOT)
    worker = bb.Subject("worker", broker.port, bridge_id="prof") if args.custody == "worker" else None
    spy = None
    try:
        time.sleep(2.0)
        if not args.no_spy and shutil.which("py-spy", path=str(Path(sys.executable).parent)):
            spy = subprocess.Popen([str(Path(sys.executable).parent / "py-spy"), "record", "--pid", str(bridge.pid),
                                    "--rate", "200", "--format", "raw", "--threads", "--nonblocking", *(["--gil"] if args.gil else []),
                                    "--duration", str(int(args.seconds)), "--output", str(args.out)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if args.fleet:
            import multiprocessing as mp

            q = mp.get_context("spawn").Queue()
            gen = mp.get_context("spawn").Process(target=bridge_fleet.fleet_proc,
                                                  args=(broker.port, args.fleet, 10.0, args.seconds, 5, q), daemon=True)
            gen.start()
            q.get(timeout=args.seconds * 2 + 120)  # ("go", cpu): the generator has encoded and starts now
        c0, t0 = proc_cpu_s(bridge.pid), time.monotonic()
        if args.fleet:
            res = q.get(timeout=args.seconds * 4 + 90)
            sent, elapsed = sum(res["sent"].values()), res["elapsed"]
        else:
            sent, elapsed, _ = bb.offer(broker.port, args.rate, args.seconds, 1, "feat", 1)
        time.sleep(1.5)
        c1, t1 = proc_cpu_s(bridge.pid), time.monotonic()
        user, system = c1[0] - c0[0], c1[1] - c0[1]
        print(f"offered {sent} msgs in {elapsed:.2f} s ({sent / elapsed:.0f}/s); bridge CPU {user + system:.2f} s "
              f"(user {user:.2f}, system {system:.2f}) = {1e6 * (user + system) / sent:.1f} us/msg, "
              f"{100 * (user + system) / (t1 - t0):.0f}% of a core; context switches per message: "
              f"{(c1[2] - c0[2]) / sent:.2f} voluntary, {(c1[3] - c0[3]) / sent:.2f} involuntary; "
              f"load average {bb._loadavg()}")
        if spy is not None:
            spy.wait(args.seconds + 30)
            print(summarize(args.out))
    finally:
        bridge.terminate()
        bridge.wait(15)
        if worker is not None:
            worker.stop()
        broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
