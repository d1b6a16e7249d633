"""Simulated fleets through one bridge: devices at 10 Hz (feature batches of 5 rows, escalations,
alerts, labels, telemetry) from one generator process, a worker subject acknowledging fused batches,
and an observer timing escalations device -> hub/infer (and the same messages without the bridge).

Each size runs ``reps`` times; a run counts only if the generator kept the pace (otherwise the size
was *not measured*: the box could not offer that load, which says nothing of the bridge). Used by
bench/bench_bridge.py (phase ``fleet``) and bench/bench_custody.py.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time

from bridge_subjects import BENCH_ROOT, DIM, Subject, box_times, loadavg, proc_cpu_s


class _Patched:
    """A container encoded once with placeholder seq, sample ids and times, patched per message
    (a few µs instead of ~40 µs of encoding; tests/bench/test_payloads.py checks the result)."""

    SEQ = 10**9  # 10 digits, replaced by the zero-padded real seq

    def __init__(self, encode, rows: int) -> None:
        import numpy as np

        self.np = np
        self.sample_mark = np.arange(-rows, 0, dtype=np.int64)
        self.ts_mark = np.full(rows, -123456.25)
        self.blob = encode(self.SEQ, self.sample_mark, self.ts_mark)
        self.seq_at = self.blob.index(str(self.SEQ).encode())
        self.sample_at = self.blob.index(self.sample_mark.tobytes())
        self.ts_at = self.blob.index(self.ts_mark.tobytes())
        self.rows = rows

    def make(self, seq: int, first_sample: int, ts: float) -> bytes:
        np, n = self.np, self.rows
        buf = bytearray(self.blob)
        buf[self.seq_at:self.seq_at + 10] = b"%010d" % seq
        buf[self.sample_at:self.sample_at + 8 * n] = np.arange(first_sample, first_sample + n, dtype=np.int64).tobytes()
        buf[self.ts_at:self.ts_at + 8 * n] = np.full(n, ts).tobytes()
        return bytes(buf)


def fleet_proc(port: int, devices: int, hz: float, seconds: float, rows_per_msg: int, q, boot: int = 1) -> None:
    """The fleet's traffic from one process on a raw socket (bench/rawmqtt.py), never early: every
    payload carries its scheduled time as capture time, and escalations and alerts carry the moment
    they were written to the socket (user property ``sent``) for the end-to-end latency."""
    import numpy as np
    import rawmqtt

    from shared.protocol import schemas
    from shared.protocol.containers import FeatureBatch, HardSample
    from shared.protocol.topics import Topics

    t = Topics(BENCH_ROOT)
    rng = np.random.default_rng(0)
    pub = rawmqtt.RawPublisher(port, f"fleet-{os.getpid()}")
    devs = [f"cam-{i}" for i in range(devices)]
    feat = rng.random((rows_per_msg, DIM), dtype=np.float32)
    scores = rng.random((rows_per_msg, 10), dtype=np.float32)
    x = rng.random((1, 1, 8, 8), dtype=np.float32)
    msg_period = rows_per_msg / hz  # each device sends one feature batch per msg_period
    sent = {"feature": 0, "escalation": 0, "event": 0, "label": 0, "telemetry": 0}
    seqs = dict.fromkeys(devs, 0)
    sample = dict.fromkeys(devs, 0)
    feats = {d: _Patched(lambda sq, sm, ts, d=d: FeatureBatch(d, "front", "digits", boot, sq, 1, sm, feat, scores,
                                                               ts).encode(), rows_per_msg) for d in devs}
    hards = {d: _Patched(lambda sq, sm, ts, d=d: HardSample(d, "front", "digits", boot, sq, 1, sm, x, feat[:1],
                                                             scores[:1], ts).encode(), 1) for d in devs}
    enc = rawmqtt.utf8
    # Encoded up front, so the generator costs only the writes while the clock runs.
    n_msgs = int(seconds * devices / msg_period)
    plan: list[tuple[float, bytes, bytes, int, bytes | None]] = []
    start = time.time() + 1.0 + n_msgs * 30e-6  # after the encoding below
    for k in range(n_msgs):
        at = k * msg_period / devices
        now = start + at
        d = devs[k % devices]
        s0 = sample[d]
        sample[d] += rows_per_msg
        seqs[d] += 1
        plan.append((at, enc(str(t.feat(d, "front"))), feats[d].make(seqs[d], s0, now), 1, None))
        sent["feature"] += 1
        if k % 4 == 0:  # ~5% of frames escalated (one hard sample per 4 batches of 5 frames)
            seqs[d] += 1
            plan.append((at, enc(str(t.hard(d, "front"))), hards[d].make(seqs[d], s0, now), 1,
                         rawmqtt.props(str(t.reply(d)), str(seqs[d]).encode())))
            sent["escalation"] += 1
        if k % 50 == 0:
            seqs[d] += 1
            ev = schemas.Event(device=d, stream="front", task="digits", sample=s0, label=1, name="one",
                               confidence=0.99, boot=boot, seq=seqs[d], ts=now)
            plan.append((at, enc(str(t.event(d, "front"))), schemas.dumps(ev), 1, b""))
            sent["event"] += 1
        if k % 10 == 0:
            lb = schemas.Labels(device=d, stream="front", task="digits",
                                items=[schemas.LabelItem(sample=s0, label=3)], ts=now)
            plan.append((at, enc(str(t.label(d, "front"))), schemas.dumps(lb), 1, None))
            sent["label"] += 1
        if k % 25 == 0:
            tm = schemas.Telemetry(device=d, boot=boot, ts=now, fps=hz, latency_ms_p50=1, latency_ms_p99=2,
                                   uplink_bytes=0, raw_bytes=0, outbox_depth=0, escalation_ratio=0.05,
                                   frames=sample[d], dropped_frames=0)
            plan.append((at, enc(str(t.telemetry(d))), schemas.dumps(tm), 0, None))
            sent["telemetry"] += 1
    lag = start - time.time()
    if lag > 0:
        time.sleep(lag)
    q.put(("go", _own_cpu_s()))  # the bridge's CPU is counted from here
    sent_key = rawmqtt.utf8("sent")
    t0 = time.perf_counter()
    for at, topic, payload, qos, props in plan:
        # Never early: the payloads carry their scheduled time as capture time.
        if t0 + at - time.perf_counter() > 0:
            pub.flush()
            pub.poll()
            while (lag := t0 + at - time.perf_counter()) > 0:
                time.sleep(min(lag, 0.002))
        if props is None:
            pub.publish(topic, payload, qos)
            if len(pub._out) >= 64:
                pub.flush()
        else:  # stamped as it goes out, and written at once, for the end-to-end latency
            pub.publish(topic, payload, qos, props + b"\x26" + sent_key + rawmqtt.utf8(repr(time.time())))
            pub.flush()
    pub.flush()
    elapsed = time.perf_counter() - t0
    cpu_end = _own_cpu_s()
    pub.wait_acked(15.0)  # every message with the broker before we leave
    acked = pub.acked
    pub.close()
    q.put({"sent": sent, "elapsed": elapsed, "planned_s": seconds, "broker_acked": acked, "messages": len(plan),
           "cpu_s": cpu_end})


def _own_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def infer_latency_proc(port: int, stop, limit_s: float, q) -> None:
    """A worker stand-in: end-to-end latency device -> bridge -> hub/infer, from the moment the device
    published it (a user property the bridge forwards unchanged, like every property). It also takes
    the devices' escalations and alerts straight from the broker (no bridge), as the baseline: what the
    generator, the broker and a Python subscriber on this box add by themselves."""
    import socket

    import numpy as np
    import paho.mqtt.client as paho

    lat: dict[str, list[float]] = {"bridge": [], "direct_hard": [], "direct_event": [], "added": []}
    first: dict[tuple[str, bytes], float] = {}  # (sent, correlation) -> when the other copy came

    def on_message(cl, u, m):
        now = time.time()
        sent = dict(getattr(m.properties, "UserProperty", None) or []).get("sent")
        if sent is None:
            return
        which = "bridge" if "/hub/infer/" in m.topic else ("direct_hard" if "/hard/" in m.topic else "direct_event")
        lat[which].append(now - float(sent))
        if which != "direct_event":
            # The same escalation straight from the broker and through the bridge: the difference is
            # what the bridge (and its extra broker hop) added to this one message.
            key = (sent, bytes(getattr(m.properties, "CorrelationData", b"") or b""))
            other = first.pop(key, None)
            if other is None:
                first[key] = now if which == "direct_hard" else -now
            elif which == "bridge" and other > 0:
                lat["added"].append(now - other)
            elif which == "direct_hard" and other < 0:
                lat["added"].append(-other - now)

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"w-{os.getpid()}", protocol=paho.MQTTv5)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.subscribe([(BENCH_ROOT + "/hub/infer/+", 1), (BENCH_ROOT + "/edge/+/hard/+", 1),
                 (BENCH_ROOT + "/edge/+/event/+", 1)])
    c.loop_start()
    q.put("ready")
    stop.wait(limit_s)
    c.loop_stop()

    def stats(xs: list[float]) -> dict:
        a = np.asarray(xs) * 1e3 if xs else np.zeros(1)
        return {"n": len(xs), "p50_ms": round(float(np.percentile(a, 50)), 3),
                "p99_ms": round(float(np.percentile(a, 99)), 3)}

    q.put({**stats(lat["bridge"]), "direct_hard": stats(lat["direct_hard"]),
           "direct_event": stats(lat["direct_event"]), "bridge_added": stats(lat["added"])})


NAMES = ("event", "escalation", "label", "feature", "telemetry")


def fleet(port: int, devices: int, hz: float, seconds: float, *, broker_pid: int | None = None,
          custody: dict | None = None, boot: int = 1) -> dict:
    """One run: fresh bridge, worker and observer subjects; CPU counted from the generator's first
    message to 2 s after its last (what it took to handle them), for every process involved."""
    ctx = mp.get_context("spawn")
    br = Subject("bridge", port, bridge_id=f"fleet{devices}", custody_settings=custody)
    wk = Subject("worker", port)
    wq, stop = ctx.Queue(), ctx.Event()
    w = ctx.Process(target=infer_latency_proc, args=(port, stop, seconds * 4 + 120, wq), daemon=True)
    w.start()
    wq.get(timeout=60)
    q = ctx.Queue()
    p = ctx.Process(target=fleet_proc, args=(port, devices, hz, seconds, 5, q, boot), daemon=True)
    p.start()
    # The generator reports its own CPU (it has exited when the window closes).
    pids = {"observer": w.pid, "worker_subject": wk.proc.pid, **({"broker": broker_pid} if broker_pid else {})}
    try:
        before = br.stats()  # counters: before the first message (the generator is still encoding)
        go, gen_cpu0 = q.get(timeout=seconds * 2 + 120)  # encoding the plan takes a while for big fleets
        assert go == "go", go
        # CPU: from the first message on (a snapshot a few ms late misses a few ms of work, not messages)
        bridge_cpu0, cpu0, box0 = br.cpu_s(), {k: proc_cpu_s(v) for k, v in pids.items()}, box_times()
        trace, untold, spacing = [], [], []
        t0 = time.monotonic()
        res = None
        while res is None and time.monotonic() - t0 < seconds * 4 + 90:
            g = br.stats()["gauges"]
            trace.append((round(time.monotonic() - t0, 1), [round(g.get(f"lag_s.{n}", 0), 3) for n in NAMES]))
            # What a crash now would make the devices send again: in custody but not yet told, and in process.
            untold.append((g.get("custody.untold", 0.0), g.get("custody.in_process", 0.0)))
            spacing.append(g.get("custody.interval_s"))
            try:
                res = q.get(timeout=0.5)
            except Exception:  # noqa: BLE001 - queue.Empty: not done yet
                continue
        if res is None:
            raise RuntimeError(f"fleet {devices}: the generator did not finish")
        p.join(10)
        time.sleep(2.0)
        after, cpu1, box1 = br.stats(), {k: proc_cpu_s(v) for k, v in pids.items()}, box_times()
        wall = time.monotonic() - t0
        stop.set()
        infer = wq.get(timeout=60)
        w.join(5)
    finally:
        stop.set()
        br.stop()
        wk.stop()
    c0, c1, g = before["counters"], after["counters"], after["gauges"]
    d = {k: c1.get(k, 0) - c0.get(k, 0) for k in c1}
    total = sum(res["sent"].values())
    el = res["elapsed"]
    backlog = {n: res["sent"][n] - sum(d.get(f"{k}.{n}", 0) for k in ("delivered", "dropped", "expired"))
               for n in NAMES}
    jiffies = max(1, box1["total"] - box0["total"])
    out = {
        "devices": devices, "frame_hz": hz, "seconds": round(el, 2), "planned_seconds": seconds,
        "generator_kept_pace": el <= seconds * 1.1, "sent": res["sent"],
        "offered_msg_s": round(total / el), "rows_s": round(d.get("rows.in", 0) / el),
        "ingested_msg_s": round(sum(d.get(f"in.{n}", 0) for n in NAMES) / el),
        "delivered": {n: d.get(f"delivered.{n}", 0) for n in NAMES},
        "dropped": {n: d.get(f"dropped.{n}", 0) for n in NAMES},
        "expired": {n: d.get(f"expired.{n}", 0) for n in NAMES},
        "backlog_at_end": backlog,
        "dispatch_p50_ms": {n: g.get(f"latency_ms_p50.{n}") for n in NAMES},
        "dispatch_p99_ms": {n: g.get(f"latency_ms_p99.{n}") for n in NAMES},
        "escalation_end_to_end_ms": infer,
        "custody_msgs_s": round(d.get("custody.sent", 0) / el),
        "custody_cpu_percent": round(100 * d.get("custody.cpu_us", 0) / 1e6 / el, 2),
        "custody_settings": custody or {},
        "custody_untold": {"mean": round(sum(u for u, _ in untold) / max(1, len(untold))),
                           "max": round(max((u for u, _ in untold), default=0))},
        "custody_in_process": {"mean": round(sum(b for _, b in untold) / max(1, len(untold))),
                               "max": round(max((b for _, b in untold), default=0))},
        "custody_interval_s": median([x for x in spacing[len(spacing) // 2:] if x is not None]),
        "batches_held_by_worker": d.get("custody.batches_held", 0),
        "bridge_cpu_percent": round(100 * (after["cpu_s"] - bridge_cpu0) / el, 1),
        # Everything else on the box over the same window (generator, broker, observer, worker
        # subject; % of one core), and the box: busy and stolen by the hypervisor, % of all its cores.
        "other_cpu_percent": {"generator": round(100 * (res["cpu_s"] - gen_cpu0) / el, 1),
                              **{k: round(100 * (cpu1[k] - cpu0[k]) / el, 1) for k in pids}},
        # 1.0 means one socket read per message: the bridge runs without shared.transport.mqtt_fast (plain paho)
        "bridge_msgs_per_read": round(d.get("mqtt.received", 0) / max(1, d.get("mqtt.reads", 0)), 2),
        "box_busy_percent": round(100 * (box1["busy"] - box0["busy"]) / jiffies, 1),
        "box_steal_percent": round(100 * (box1["steal"] - box0["steal"]) / jiffies, 1),
        "window_s": round(wall, 1),
        "bridge_thread_cpu_s": {k: round(v - before["threads"].get(k, 0.0), 2) for k, v in after["threads"].items()
                                if v - before["threads"].get(k, 0.0) > 0.05},
        "rss_mb": round(after["rss"].get("VmRSS", 0), 1), "rss_peak_mb": round(after["rss"].get("VmHWM", 0), 1),
        "labels_joined": d.get("labels.joined", 0), "rows_out": d.get("rows.out", 0),
        "loadavg": loadavg(), "lag_trace_s": trace, "gc_pauses_ms": after.get("gc_pauses_ms"),
    }
    # Sustained: everything sent was delivered within 2 s of the end, nothing shed. Only a run whose
    # generator kept the pace measured anything: otherwise the fleet was never offered.
    delivered = not sum(backlog.values()) and not sum(out["dropped"].values()) and not sum(out["expired"].values())
    out["measured"] = out["generator_kept_pace"]
    out["sustained"] = bool(delivered and out["measured"])
    return out


def median(xs: list[float]) -> float | None:
    xs = sorted(x for x in xs if x is not None)
    if not xs:
        return None
    m = len(xs) // 2
    return xs[m] if len(xs) % 2 else round((xs[m - 1] + xs[m]) / 2, 3)


def size_summary(devices: int, runs: list[dict]) -> dict:
    """Median and spread over the measured runs of one size; a size none of whose runs was offered
    in full is ``not measured``, not "not sustained"."""
    measured = [r for r in runs if r["measured"]]
    out: dict = {"devices": devices, "runs": len(runs), "measured_runs": len(measured),
                 "sustained_runs": sum(r["sustained"] for r in measured)}
    if not measured:
        offered = max(r["offered_msg_s"] for r in runs)
        planned = round(sum(runs[0]["sent"].values()) / runs[0]["planned_seconds"])
        out["verdict"] = f"not measured: the generator offered {offered:,} of {planned:,} msg/s"
        return out
    out["verdict"] = ("sustained" if out["sustained_runs"] == len(measured) else
                      "not sustained" if not out["sustained_runs"] else
                      f"sustained in {out['sustained_runs']} of {len(measured)} runs")

    def stat(f) -> dict:
        xs = [f(r) for r in measured]
        return {"median": median(xs), "min": min(xs), "max": max(xs), "all": xs}

    out["offered_msg_s"] = stat(lambda r: r["offered_msg_s"])
    out["bridge_cpu_percent"] = stat(lambda r: r["bridge_cpu_percent"])
    out["escalation_p99_ms"] = stat(lambda r: r["escalation_end_to_end_ms"]["p99_ms"])
    out["escalation_p50_ms"] = stat(lambda r: r["escalation_end_to_end_ms"]["p50_ms"])
    out["bridge_added_p99_ms"] = stat(lambda r: r["escalation_end_to_end_ms"]["bridge_added"]["p99_ms"])
    out["direct_escalation_p99_ms"] = stat(lambda r: r["escalation_end_to_end_ms"]["direct_hard"]["p99_ms"])
    out["event_p99_ms"] = stat(lambda r: round(r["escalation_end_to_end_ms"]["direct_event"]["p99_ms"]
                                               + (r["dispatch_p99_ms"]["event"] or 0.0), 3))
    out["custody_msgs_s"] = stat(lambda r: r["custody_msgs_s"])
    out["generator_cpu_percent"] = stat(lambda r: r["other_cpu_percent"]["generator"])
    out["box_steal_percent"] = stat(lambda r: r["box_steal_percent"])
    return out


def fleets(port: int, sizes: list[int], reps: int, seconds: float, *, broker_pid: int | None = None,
           custody: dict | None = None, say=print) -> tuple[list[dict], list[dict]]:
    """Every size ``reps`` times, smallest first. A size whose first run the generator could not
    offer is not repeated, and the larger sizes are skipped (the box cannot offer them either)."""
    runs, sizes_out = [], []
    for devices in sizes:
        mine = []
        for rep in range(reps):
            f = fleet(port, devices, 10.0, seconds, broker_pid=broker_pid, custody=custody, boot=rep + 1)
            f["rep"] = rep + 1
            mine.append(f)
            e = f["escalation_end_to_end_ms"]
            say(f"fleet {devices} run {rep + 1}: offered {f['offered_msg_s']:,} msg/s"
                f"{'' if f['measured'] else ' (generator fell behind: not measured)'}, sustained {f['sustained']}, "
                f"bridge CPU {f['bridge_cpu_percent']}%, generator {f['other_cpu_percent']['generator']}%, "
                f"escalation p99 {e['p99_ms']:.1f} ms (direct {e['direct_hard']['p99_ms']:.1f}), "
                f"steal {f['box_steal_percent']}%, load {f['loadavg']}")
            if not f["measured"]:
                break
        runs += mine
        summary = size_summary(devices, mine)
        sizes_out.append(summary)
        if not summary["measured_runs"]:
            for bigger in sizes[sizes.index(devices) + 1:]:
                sizes_out.append({"devices": bigger, "runs": 0, "measured_runs": 0, "sustained_runs": 0,
                                  "verdict": f"not measured: skipped, the generator could not offer {devices:,}"})
            break
    return runs, sizes_out
