#!/usr/bin/env python
"""Hub bridge benchmark: the issue-11 targets as ratios measured in one run, on one mosquitto started here.

    .venv/bin/python bench/bench_bridge.py [--quick] [--rounds N] [--fleet 1000,2000,3000,5000] [--fleet-reps 3]

The whole bench takes about 8-10 minutes on a 2 vCPU box (--quick: about 2); SIGTERM or Ctrl-C
leaves nothing running (bench/cleanup.py).

1. Lossless ingest, in rounds (subjects interleaved, so each round's ratios share the box's load):
   (a) plain paho receiver of the feature payload, QoS 1 (the one-process ceiling);
   (b) naive paho re-publisher (on_message -> publish), QoS 1;
   (c) the bridge: priorities, shedding, dedup (custody ledger), fusion, deferred acks, hub/batch
       output, custody ``worker`` with a worker subject that acknowledges every fused batch
       (BatchAck), and the Custody messages the bridge sends to the devices.
   Highest rate (paced, searched) at which every message got through within the grace time; for the
   bridge: every message delivered into fusion, every row out in hub/batch, nothing shed.
   Each subject in its own process, the load generator in another; the generator waits for the
   broker's PUBACK of every message before it counts a trial.
2. CPU per message of (a), (b), (c) at one common offered rate (the subject process's CPU from
   /proc): less sensitive to other work on the box than the lossless rates.
3. Two bridge replicas on one ``$share`` group: lossless rate and scaling factor against (c).
4. Simulated fleets (devices at 10 Hz frames: feature batches of 5 rows, escalations, alerts, labels,
   telemetry) through one bridge with the worker subject, each size --fleet-reps times
   (bench/bridge_fleet.py): sustained or not, bridge CPU, end-to-end escalation latency device ->
   hub/infer and the same messages without the bridge, dispatch latency per class, custody messages
   per second, the CPU of every other process and the box's steal time; median and spread per size.
   A run whose generator fell behind measured nothing: its size is reported "not measured".

Prints the targets with the machine and load average and writes bench/results/bench_bridge.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import bridge_fleet  # noqa: E402
import cleanup  # noqa: E402  (bench/cleanup.py)
from bridge_subjects import BENCH_ROOT, DIM, ROWS, Subject, box_busy  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "bench_bridge.json"
GRACE_S = 0.5  # a trial is lossless when everything got through within this long after the generator's end


# ---- load generator (own process) ---------------------------------------------------------------
_SEQ_MARK = 10**9  # a 10-digit placeholder: a template's seq is patched in place, zero-padded


def gen_payloads(kind: str, n: int, seq0: int, devices: int) -> list[tuple[str, bytes]]:
    """``n`` feature batches round-robin over ``devices``: each device numbers its messages 0, 1, 2, ...
    within a boot (one boot per trial, ``seq0``), sample ids unique across trials, so no trial's rows
    are another's copies. Encoded once per device and patched per message (seq, sample ids): a
    trial of 40k messages takes 0.1 s to make instead of 2-5 s (tests/bench checks the patched
    payloads decode as their own encoding would)."""
    import numpy as np

    from shared.protocol.containers import FeatureBatch

    if kind == "b64":
        return [(f"{BENCH_ROOT}/edge/d{i % devices}/feat/s", b"x" * 64) for i in range(n)]
    rng = np.random.default_rng(seq0)
    feat = rng.random((ROWS, DIM), dtype=np.float32)
    scores = rng.random((ROWS, 10), dtype=np.float32)
    ts = np.full(ROWS, time.time())
    mark = np.arange(-ROWS, 0, dtype=np.int64)  # sample ids no real message has
    templates: dict[str, tuple[bytes, int, int]] = {}
    out = []
    for i in range(n):
        dev = f"d{i % devices}"
        t = templates.get(dev)
        if t is None:
            blob = FeatureBatch(dev, "s", "digits", seq0, _SEQ_MARK, 1, mark, feat, scores, ts).encode()
            seq_at, sample_at = blob.index(str(_SEQ_MARK).encode()), blob.index(mark.tobytes())
            t = templates[dev] = (blob, seq_at, sample_at)
        blob, seq_at, sample_at = t
        first = (seq0 + i) * ROWS
        buf = bytearray(blob)
        buf[seq_at:seq_at + 10] = b"%010d" % (i // devices)
        buf[sample_at:sample_at + 8 * ROWS] = np.arange(first, first + ROWS, dtype=np.int64).tobytes()
        out.append((f"{BENCH_ROOT}/edge/{dev}/feat/s", bytes(buf)))
    return out


def _publisher(port: int):
    """A connection to the broker and a function that runs one trial on it (bench/rawmqtt.py: the
    generator must not be what a trial measures)."""
    import rawmqtt

    pub = rawmqtt.RawPublisher(port, f"pub-{os.getpid()}")

    def trial(rate: float, n: int, qos: int, kind: str, seq0: int, devices: int) -> tuple[float, int]:
        topics: dict[str, bytes] = {}
        msgs = [(topics.setdefault(t, rawmqtt.utf8(t)), p, qos, b"") for t, p in gen_payloads(kind, n, seq0, devices)]
        acked0 = pub.acked
        t0 = time.perf_counter()
        rawmqtt.paced(pub, msgs, rate)
        # Every message acknowledged by the broker before the trial counts: the rate offered is
        # what the broker took, not the pace of the sending loop.
        pub.wait_acked(10.0)
        return time.perf_counter() - t0, (pub.acked - acked0) if qos else n

    return pub, trial


def publish_proc(port: int, rate: float, n: int, qos: int, kind: str, seq0: int, devices: int, q) -> None:
    pub, trial = _publisher(port)
    q.put(trial(rate, n, qos, kind, seq0, devices))
    pub.close()


def generator_proc(port: int, conn) -> None:
    """A generator kept for a whole search: one spawn and one connection, a trial per command."""
    pub, trial = _publisher(port)
    conn.send("ready")
    while (cmd := conn.recv()) != "stop":
        conn.send(trial(*cmd))
    pub.close()


class Generator:
    def __init__(self, port: int) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=generator_proc, args=(port, child), daemon=True)
        self.proc.start()
        if not self.conn.poll(60) or self.conn.recv() != "ready":
            raise RuntimeError("the load generator did not start")

    def offer(self, rate: float, seconds: float, qos: int, kind: str, seq0: int, devices: int = 100
              ) -> tuple[int, float, int]:
        """Offer ``rate`` msg/s for ``seconds``: (sent, seconds until the broker acknowledged the last,
        broker-acked)."""
        n = max(100, int(rate * seconds))
        self.conn.send((rate, n, qos, kind, seq0, devices))
        if not self.conn.poll(seconds * 4 + 60):
            raise RuntimeError("the load generator did not finish its trial")
        elapsed, acked = self.conn.recv()
        return n, elapsed, acked

    def stop(self) -> None:
        try:
            self.conn.send("stop")
        except (OSError, EOFError):
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()


def offer(port: int, rate: float, seconds: float, qos: int, kind: str, seq0: int, devices: int = 100
          ) -> tuple[int, float, int]:
    """One trial from a generator process of its own (bench/profile_bridge.py)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    n = max(100, int(rate * seconds))
    p = ctx.Process(target=publish_proc, args=(port, rate, n, qos, kind, seq0, devices, q), daemon=True)
    p.start()
    elapsed, acked = q.get(timeout=seconds * 4 + 60)
    p.join(10)
    return n, elapsed, acked


def received(kind: str, s: dict) -> int:
    if kind == "bridge":
        return s["counters"].get("delivered.feature", 0)
    return s["received"]


def lossless_search(name: str, kind: str, port: int, qos: int, payload: str, start: float, seconds: float,
                    budget_s: float, seq_base: list[int], subjects: list[Subject] | None = None,
                    **kw) -> dict:
    """Geometric ramp until a trial loses messages, then bisect; bounded by budget_s."""
    subs = subjects or [Subject(kind, port, qos, **kw)]
    gen = Generator(port)
    t_start = time.monotonic()
    good, bad, trials, retried = 0.0, None, [], False
    rate = start
    try:
        while time.monotonic() - t_start < budget_s:
            before = [s.stats() for s in subs]
            cpu0, box0, t0 = sum(s.cpu_s() for s in subs), box_busy(), time.monotonic()
            n, elapsed, _ = gen.offer(rate, seconds, qos, payload, seq_base[0])
            t_offered = time.monotonic()
            seq_base[0] += n + 10
            offered = n / elapsed
            # Lossless: all in within GRACE_S of the generator's end (for the bridge: delivered into
            # fusion, nothing shed), so a subject cannot pass by working off a backlog for seconds.
            deadline = time.monotonic() + GRACE_S
            ok = kept_pace = False
            while True:
                after = [s.stats() for s in subs]
                got = sum(received(kind, a) - received(kind, b) for a, b in zip(after, before, strict=True))
                lost = 0
                if kind == "bridge":
                    for a, b in zip(after, before, strict=True):
                        for k in ("dropped.feature", "expired.feature"):
                            lost += a["counters"].get(k, 0) - b["counters"].get(k, 0)
                if got >= n and not lost:
                    ok = offered >= 0.97 * rate  # the generator itself must have kept the pace
                    kept_pace = ok
                    break
                if time.monotonic() > deadline or lost:
                    break
                time.sleep(0.02)
            if ok and kind == "bridge":
                # ... and every row out in hub/batch, after fusion's own wait (label_wait + batch_age).
                t_rows = time.monotonic() + 3.0
                while True:
                    out = sum(a["counters"].get("rows.out", 0) - b["counters"].get("rows.out", 0)
                              for a, b in zip([s.stats() for s in subs], before, strict=True))
                    if out >= n * ROWS or time.monotonic() > t_rows:
                        break
                    time.sleep(0.05)
                ok = out == n * ROWS
            box1, wall = box_busy(), time.monotonic() - t0
            # A trial the subject passed but the generator did not offer in full says nothing of the
            # subject: the search is bounded by the generator there.
            gen_bound = got >= n and not lost and not kept_pace
            trials.append({"rate": round(rate), "offered": round(offered), "n": n, "got": got, "lossless": ok,
                           "generator_fell_behind": gen_bound,
                           "offer_s": round(t_offered - t0, 1), "judge_s": round(time.monotonic() - t_offered, 1),
                           # how busy the subject(s) and the whole box were, over the trial (incl. generator start)
                           "subject_cpu_pct": round(100 * (sum(s.cpu_s() for s in subs) - cpu0) / wall),
                           "box_busy_pct": round(100 * (box1[0] - box0[0]) / max(1, box1[1] - box0[1]) *
                                                 (os.cpu_count() or 1))})
            if not ok:
                t_drain = time.monotonic()
                _drain(subs, kind)
                trials[-1]["drain_s"] = round(time.monotonic() - t_drain, 1)
                if not retried:  # one retry absorbs a scheduling hiccup on a shared 2-core box
                    retried = True
                    continue
            retried = False
            if ok:
                good = max(good, offered)
            else:
                bad = rate if bad is None else min(bad, rate)
            if bad is None:
                rate *= 1.6
            else:
                if bad / max(good, 1) < 1.12:
                    break
                rate = (good + bad) / 2 if good else bad / 2
    finally:
        gen.stop()
        if subjects is None:
            for s in subs:
                s.stop()
    # Generator-bound: every failed trial failed because the generator fell behind (the subject had
    # everything): the subject's own ceiling lies above what this box could offer.
    failed = [t for t in trials if not t["lossless"]]
    bound = bool(failed) and all(t["generator_fell_behind"] for t in failed)
    return {"name": name, "lossless_msg_s": round(good), "generator_bound": bound, "trials": trials}


def _drain(subs: list[Subject], kind: str, limit: float = 8.0) -> None:
    """After a lossy trial, wait until the subject stops receiving, so the next trial starts clean."""
    last, t0 = None, time.monotonic()
    while time.monotonic() - t0 < limit:
        now = sum(received(kind, s.stats()) for s in subs)
        if now == last:
            return
        last = now
        time.sleep(0.4)


def cpu_per_message(sub: Subject, port: int, rate: float, seconds: float, seq_base: list[int]) -> dict:
    """CPU microseconds the subject's process spends per message at a fixed offered rate."""
    gen = Generator(port)
    c0 = sub.cpu_s()
    try:
        n, elapsed, acked = gen.offer(rate, seconds, 1, "feat", seq_base[0])
    finally:
        gen.stop()
    seq_base[0] += n + 10
    time.sleep(1.5)  # let it finish (fusion holds rows up to label_wait + batch_age)
    return {"rate": round(n / elapsed), "n": n, "cpu_us_per_msg": round(1e6 * (sub.cpu_s() - c0) / n, 1)}


# ---- main ------------------------------------------------------------------------------------
SUBJECTS = (("a", "(a) paho receive, feat QoS 1", "recv"), ("b", "(b) naive re-publisher, feat QoS 1", "repub"),
            ("c", "(c) bridge (priorities+dedup+fusion+custody)", "bridge"))


def main(argv: list[str] | None = None) -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="Short trials, one round, one small fleet (~3 min).")
    ap.add_argument("--rounds", type=int, default=None, help="Rounds of (a), (b), (c) (default 2; quick 1).")
    ap.add_argument("--fleet", default=None, help="Fleet sizes, comma-separated (default 1000,2000,3000,5000).")
    ap.add_argument("--fleet-reps", type=int, default=None, help="Runs per fleet size (default 3; quick 1).")
    ap.add_argument("--with-qos0-ceiling", action="store_true",
                    help="Also search a plain receiver's ceiling on 64 B QoS 0 messages (informational, ~1.5 min).")
    ap.add_argument("--broker-inflight", type=int, default=0, help="mosquitto max_inflight_messages for the "
                    "bench broker (0: the project's config, 100).")
    ap.add_argument("--out", type=Path, default=RESULTS, help="JSON results file.")
    ap.add_argument("--skip", default="", help="Phases to skip: comma-separated of lossless,cpu,replicas,fleet.")
    args = ap.parse_args(argv)
    from shared.transport.broker import Broker

    quick = args.quick
    rounds = args.rounds or (1 if quick else 2)
    fleet_reps = args.fleet_reps or (1 if quick else 3)
    sizes = [int(x) for x in (args.fleet or ("300" if quick else "1000,2000,3000,5000")).split(",") if x]
    skip = set(args.skip.split(",")) - {""}
    secs = 1.5 if quick else 2.0
    budget = 30.0 if quick else 45.0
    start_rate = 3000 if quick else 8000  # a 2 vCPU box passes 8k: three fewer ramp trials per search
    t_all = time.monotonic()
    t_phase: dict[str, float] = {}
    load0 = _loadavg()  # other work on the box skews every figure: recorded with them
    work = Path(tempfile.mkdtemp(prefix="bench-bridge-"))
    broker = Broker(work, extra=f"max_inflight_messages {args.broker_inflight}" if args.broker_inflight else "").start()
    port = broker.port
    seq = [1]
    results: dict = {"machine": _machine(), "quick": quick, "rounds": rounds,
                     "payload": f"FeatureBatch {ROWS}x{DIM} float32, {len(gen_payloads('feat', 1, 0, 1)[0][1])} B, "
                                f"QoS 1, 100 devices",
                     "bridge_config": "custody.features=worker (a worker subject acks every fused batch), "
                                      "fusion batch_size 256, batch_age 0.2 s, label_wait 0.2 s, Custody QoS 0 "
                                      "to every device with news at most once a second"}
    try:
        if "lossless" not in skip:
            t_phase["lossless"] = time.monotonic()
            results["lossless_rounds"] = []
            worker = Subject("worker", port)
            try:
                for r in range(rounds):
                    rnd: dict = {"loadavg_start": _loadavg()}
                    for key, name, kind in SUBJECTS:
                        kw = {"bridge_id": f"single{r}"} if kind == "bridge" else {}
                        rnd[key] = lossless_search(name, kind, port, 1, "feat", start_rate, secs, budget, seq, **kw)
                    a, b, c = (rnd[k]["lossless_msg_s"] for k in "abc")
                    rnd["c_over_a"] = round(c / a, 3) if a else None
                    rnd["c_over_b"] = round(c / b, 3) if b else None
                    rnd["loadavg_end"] = _loadavg()
                    results["lossless_rounds"].append(rnd)
                    gb = {k: " (generator-bound)" if rnd[k]["generator_bound"] else "" for k in "abc"}
                    print(f"round {r + 1}: (a) {a:,}{gb['a']} (b) {b:,}{gb['b']} (c) {c:,}{gb['c']} msg/s; "
                          f"c/a {rnd['c_over_a']} c/b {rnd['c_over_b']}; load {rnd['loadavg_start']}->"
                          f"{rnd['loadavg_end']}", flush=True)
            finally:
                worker.stop()
            if args.with_qos0_ceiling:
                results["paho_receive_64B_qos0"] = lossless_search("(a0) paho receive, 64 B QoS 0", "recv", port, 0,
                                                                   "b64", 10000, secs, budget, seq)
        if "cpu" not in skip:
            t_phase["cpu"] = time.monotonic()
            lr = results.get("lossless_rounds")
            # A rate every subject sustains (the re-publisher is the slowest): half its median lossless rate.
            rate = 0.5 * min(_median([rnd[k]["lossless_msg_s"] for rnd in lr]) for k in "abc") if lr else 2000.0
            rate = max(500.0, rate)
            results["cpu"] = {"rate": round(rate)}
            worker = Subject("worker", port)
            try:
                for key, _name, kind in SUBJECTS:
                    sub = Subject(kind, port, 1, **({"bridge_id": "cpu"} if kind == "bridge" else {}))
                    try:
                        results["cpu"][key] = cpu_per_message(sub, port, rate, 2.0 if quick else 5.0, seq)
                    finally:
                        sub.stop()
            finally:
                worker.stop()
            cpu = results["cpu"]
            cpu["b_over_c"] = round(cpu["b"]["cpu_us_per_msg"] / cpu["c"]["cpu_us_per_msg"], 3)
            cpu["a_over_c"] = round(cpu["a"]["cpu_us_per_msg"] / cpu["c"]["cpu_us_per_msg"], 3)
            print(f"CPU per message at {cpu['rate']:,} msg/s: (a) {cpu['a']['cpu_us_per_msg']} us, "
                  f"(b) {cpu['b']['cpu_us_per_msg']} us, (c) {cpu['c']['cpu_us_per_msg']} us", flush=True)
        if "replicas" not in skip:
            t_phase["replicas"] = time.monotonic()
            worker = Subject("worker", port)
            reps = [Subject("bridge", port, bridge_id=f"rep{i}", share="bench") for i in range(2)]
            one = _median([rnd["c"]["lossless_msg_s"] for rnd in results.get("lossless_rounds", [])]) or 3000
            try:
                c0 = [r.cpu_s() for r in reps]
                two = lossless_search("(c) 2 bridge replicas ($share)", "bridge", port, 1, "feat",
                                      max(1000, one * 0.8), secs, budget, seq, subjects=reps)
                two["replica_cpu_s"] = [round(r.cpu_s() - c, 2) for r, c in zip(reps, c0, strict=True)]
            finally:
                for r in reps:
                    r.stop()
                worker.stop()
            two["one_bridge_msg_s"] = one
            two["scaling_vs_one"] = round(two["lossless_msg_s"] / one, 2) if one else None
            results["replicas"] = two
            print(f"replicas: {two['lossless_msg_s']:,} msg/s, x{two['scaling_vs_one']} of one ({one:,})", flush=True)
        if "fleet" not in skip:
            t_phase["fleet"] = time.monotonic()
            results["fleet"], results["fleet_sizes"] = bridge_fleet.fleets(
                port, sizes, fleet_reps, 4.0 if quick else 8.0, broker_pid=broker.proc.pid if broker.proc else None,
                say=lambda line: print(line, flush=True))
    finally:
        broker.stop()
    results["bench_seconds"] = round(time.monotonic() - t_all, 1)
    ends = [*list(t_phase.values())[1:], time.monotonic()]
    results["phase_seconds"] = {k: round(e - t, 1) for (k, t), e in zip(t_phase.items(), ends, strict=True)}
    results["machine"]["loadavg_start_end"] = [load0, _loadavg()]
    results["targets"] = _targets(results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    _print(results, args.out)
    return 0


def _median(xs: list[float]) -> float | None:
    xs = sorted(xs)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else round((xs[m - 1] + xs[m]) / 2, 3)


def _targets(r: dict) -> list[dict]:
    """Each issue-11 target with what this run measured (median over rounds, and the spread)."""
    out = []

    def add(name: str, want: str, got, ok, spread=None) -> None:
        out.append({"target": name, "want": want, "measured": got, "spread": spread,
                    "met": None if ok is None else bool(ok)})

    lr = r.get("lossless_rounds") or []
    if lr:
        ca = [x["c_over_a"] for x in lr if x["c_over_a"] is not None]
        cb = [x["c_over_b"] for x in lr if x["c_over_b"] is not None]
        add("one bridge vs plain paho receive (lossless)", ">= 0.8", _median(ca), ca and _median(ca) >= 0.8,
            [min(ca), max(ca)] if ca else None)
        add("one bridge vs naive re-publisher (lossless)", ">= 1.5", _median(cb), cb and _median(cb) >= 1.5,
            [min(cb), max(cb)] if cb else None)
    if "replicas" in r:
        s = r["replicas"]["scaling_vs_one"]
        add("two replicas vs one (lossless)", ">= 1.7", s, s is not None and s >= 1.7)
    for f in r.get("fleet_sizes", []):
        if f["devices"] != 1000:
            continue
        if not f["measured_runs"]:
            add("fleet 1000 x 10 Hz", "measured", f["verdict"], None)
            continue

        def spread(key: str, f: dict = f) -> list:
            return [f[key]["min"], f[key]["max"]]

        cpu, p99, ev = (f[k]["median"] for k in ("bridge_cpu_percent", "escalation_p99_ms", "event_p99_ms"))
        add("fleet 1000 x 10 Hz: bridge CPU", "<= 50% of a core", cpu,
            cpu <= 50 and f["sustained_runs"] == f["measured_runs"], spread("bridge_cpu_percent"))
        add("fleet 1000: escalation device->hub/infer p99", "< 10 ms", p99, p99 < 10, spread("escalation_p99_ms"))
        add("fleet 1000: event p99, device->bridge (direct) + in bridge", "< 10 ms", ev, ev < 10,
            spread("event_p99_ms"))
    sizes = r.get("fleet_sizes", [])
    if sizes:
        ok = [f["devices"] for f in sizes if f["measured_runs"] and f["sustained_runs"] == f["measured_runs"]]
        unmeasured = [f["devices"] for f in sizes if not f["measured_runs"]]
        got = f"{max(ok) if ok else 0:,}" + (f" (not measured: {', '.join(f'{d:,}' for d in unmeasured)})"
                                             if unmeasured else "")
        add("largest fleet sustained in every run (10 Hz)", "report (5,000 row)", got, None)
    return out


def _machine() -> dict:
    """What the figures depend on besides the code: the CPU, the interpreter, the libraries, and
    whether the bridge's fast receive path (shared/transport/mqtt_fast.py) works with this paho."""
    from importlib.metadata import PackageNotFoundError, version

    from shared.transport import mqtt_fast

    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    libs = {}
    for name in ("paho-mqtt", "numpy", "pydantic"):
        try:
            libs[name] = version(name)
        except PackageNotFoundError:
            libs[name] = None
    return {"cpus": os.cpu_count(), "cpu_model": model, "python": platform.python_version(),
            "mosquitto": _mosq_version(), "libraries": libs, "mqtt_fast_receive": mqtt_fast.supported(),
            "note": "load generator, broker and subjects share the cores"}


def _loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def _mosq_version() -> str:
    try:
        from shared.transport.broker import mosquitto_binary

        out = subprocess.run([mosquitto_binary(), "-h"], capture_output=True, text=True, timeout=5).stdout
        return out.splitlines()[0].split("version")[-1].strip()
    except Exception:  # noqa: BLE001 - informational only
        return "unknown"


def _print(r: dict, out: Path = RESULTS) -> None:
    m = r["machine"]
    print(f"\nHub bridge benchmark: {m['cpus']} CPUs ({m['cpu_model']}), mosquitto {m['mosquitto']}, "
          f"Python {m['python']}, {m.get('libraries')}, fast receive {m.get('mqtt_fast_receive')}; "
          f"load average start/end {m['loadavg_start_end']}")
    print(f"payload {r['payload']}; bridge: {r['bridge_config']}")
    for i, rnd in enumerate(r.get("lossless_rounds", [])):
        print(f"round {i + 1} (load {rnd['loadavg_start']}->{rnd['loadavg_end']}): " + ", ".join(
            f"{rnd[k]['name']} {rnd[k]['lossless_msg_s']:,}" for k in "abc")
            + f"; c/a {rnd['c_over_a']}, c/b {rnd['c_over_b']}")
    if "paho_receive_64B_qos0" in r:
        print(f"{r['paho_receive_64B_qos0']['name']}: {r['paho_receive_64B_qos0']['lossless_msg_s']:,} msg/s")
    if "cpu" in r:
        c = r["cpu"]
        print(f"CPU per message at {c['rate']:,} msg/s: (a) {c['a']['cpu_us_per_msg']} us, (b) "
              f"{c['b']['cpu_us_per_msg']} us, (c) {c['c']['cpu_us_per_msg']} us -> (a)/(c) {c['a_over_c']}, "
              f"(b)/(c) {c['b_over_c']}")
    if "replicas" in r:
        x = r["replicas"]
        print(f"2 replicas: {x['lossless_msg_s']:,} msg/s vs one {x['one_bridge_msg_s']:,}: x{x['scaling_vs_one']} "
              f"(replica CPU s {x['replica_cpu_s']})")
    for f in r.get("fleet", []):
        e = f["escalation_end_to_end_ms"]
        print(f"\nfleet: {f['devices']} devices x {f['frame_hz']} Hz (5 rows per feature message), run {f.get('rep', 1)}, "
              f"{f['seconds']} s (planned {f['planned_seconds']}): offered {f['offered_msg_s']:,} msg/s "
              f"({f['rows_s']:,} rows/s), bridge CPU {f['bridge_cpu_percent']}% of a core, RSS {f['rss_mb']} MB, "
              f"custody {f['custody_msgs_s']:,} msg/s; sustained: {f['sustained']} (not delivered 2 s after the end: "
              f"{sum(f['backlog_at_end'].values())}; generator kept pace: {f['generator_kept_pace']})")
        print(f"other processes, % of a core: {f['other_cpu_percent']}; box busy {f['box_busy_percent']}% of all "
              f"cores, steal {f['box_steal_percent']}%; bridge messages per socket read {f['bridge_msgs_per_read']}")
        print("dispatch latency: from receipt on the bridge's network thread to the message's fate there")
        print(f"{'class':12} {'sent':>8} {'delivered':>10} {'dropped':>8} {'expired':>8} {'p50 ms':>9} {'p99 ms':>9}")
        for n in ("event", "escalation", "label", "feature", "telemetry"):
            p50, p99 = f["dispatch_p50_ms"][n], f["dispatch_p99_ms"][n]
            print(f"{n:12} {f['sent'][n]:>8} {f['delivered'][n]:>10} {f['dropped'][n]:>8} {f['expired'][n]:>8} "
                  f"{p50 if p50 is not None else '-':>9} {p99 if p99 is not None else '-':>9}")
        print(f"escalation device->hub/infer: p50 {e['p50_ms']:.2f} ms, p99 {e['p99_ms']:.2f} ms (n={e['n']}); "
              f"without the bridge (device->broker->subscriber, same messages): escalations p99 "
              f"{e['direct_hard']['p99_ms']:.2f} ms, alerts p99 {e['direct_event']['p99_ms']:.2f} ms; added by the "
              f"bridge per escalation: p50 {e['bridge_added']['p50_ms']:.2f} ms, p99 {e['bridge_added']['p99_ms']:.2f} ms")
    if r.get("fleet_sizes"):
        print("\nfleet sizes: median [min..max] over the measured runs")
        print(f"{'devices':>8} {'runs':>5} {'verdict':<28} {'offered msg/s':>14} {'bridge CPU %':>20} "
              f"{'escalation p99 ms':>24} {'direct p99 ms':>20} {'generator CPU %':>20} {'steal %':>12}")
        for f in r["fleet_sizes"]:
            if not f["measured_runs"]:
                print(f"{f['devices']:>8} {f['runs']:>5} {f['verdict']}")
                continue

            def cell(key: str, fmt: str = "{:g}", f: dict = f) -> str:
                x = f[key]
                return f"{fmt.format(x['median'])} [{fmt.format(x['min'])}..{fmt.format(x['max'])}]"

            print(f"{f['devices']:>8} {f['runs']:>5} {f['verdict']:<28} {cell('offered_msg_s', '{:,.0f}'):>14} "
                  f"{cell('bridge_cpu_percent'):>20} {cell('escalation_p99_ms', '{:.2f}'):>24} "
                  f"{cell('direct_escalation_p99_ms', '{:.2f}'):>20} {cell('generator_cpu_percent'):>20} "
                  f"{cell('box_steal_percent'):>12}")
    print("\ntargets (issue 11), measured in this run:")
    for t in r["targets"]:
        verdict = "-" if t["met"] is None else ("MET" if t["met"] else "MISSED")
        spread = f" (runs: {t['spread'][0]}..{t['spread'][1]})" if t["spread"] else ""
        print(f"  {t['target']:52} want {t['want']:18} got {t['measured']}{spread}  {verdict}")
    print(f"total {r['bench_seconds']} s (phases: {r.get('phase_seconds')}) -> {out}")


if __name__ == "__main__":
    sys.exit(main())
