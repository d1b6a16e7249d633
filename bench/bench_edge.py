#!/usr/bin/env python
"""Edge agent benchmark: ORT vs PyTorch eager, pipeline throughput on one core, hot-swap pause, uplink bytes.

    .venv/bin/python bench/bench_edge.py [--quick]

Parts (each with its baseline measured in the same run):

1. Same model, same input, one thread: onnxruntime vs PyTorch eager (a small CNN for the
   digits input 1x1x8x8 and one for a 1x3x64x64 frame, exported with torch.onnx.export
   dynamo=False). Baseline: torch eager.
2. In a child process pinned to one core (os.sched_setaffinity, intra_op=1) that never
   imports torch or onnx: the bare loop preprocess -> session.run (baseline), then the whole
   agent end to end against a real mosquitto pinned to another core (capture thread,
   decision, pred/feat/hard/event publishing, SQLite outbox): frames/s, CPU per frame, peak RSS.
3. Hot swaps under full load in that child: the gap between consecutive samples at each
   swap and the worst gap while the new session is built, vs the ordinary gaps.
4. Uplink bytes per sample by topic vs the raw frame as JPEG, at the escalation rate measured.

Prints a table and writes bench/results/bench_edge.json.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results" / "bench_edge.json"


def stats(lat_s: list[float] | np.ndarray) -> dict[str, float]:
    a = np.asarray(lat_s, dtype=np.float64) * 1e6
    return {"p50_us": float(np.percentile(a, 50)), "p99_us": float(np.percentile(a, 99)),
            "samples_per_s": float(1e6 / a.mean()) if a.size else 0.0, "n": int(a.size)}


# ---- 1. ORT vs torch -----------------------------------------------------------------
def torch_models():
    import torch
    from torch import nn

    class DigitsCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1),
                                      nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(32, 10)

        def forward(self, x):
            feat = self.body(x)
            return feat, torch.softmax(self.head(feat), dim=-1)

    class FrameCNN(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(nn.Conv2d(3, 16, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
            self.head = nn.Linear(64, 10)

        def forward(self, x):
            feat = self.body(x)
            return feat, torch.softmax(self.head(feat), dim=-1)

    torch.manual_seed(0)
    return [("digits CNN 1x1x8x8", DigitsCNN().eval(), (1, 1, 8, 8)),
            ("frame CNN 1x3x64x64", FrameCNN().eval(), (1, 3, 64, 64))]


def bench_ort_vs_torch(iters: int) -> list[dict]:
    import onnxruntime as ort
    import torch

    from edge_agent.model import session_options

    torch.set_num_threads(1)
    out = []
    for name, model, shape in torch_models():
        x = torch.from_numpy(np.random.default_rng(0).random(shape, dtype=np.float32))
        buf = io.BytesIO()
        t0 = time.perf_counter()
        # The legacy exporter (dynamo=False): one self-contained file, timed as export_s below
        # (cloud_worker/releasing/export.py says why not the dynamo exporter).
        torch.onnx.export(model, (x,), buf, input_names=["x"], output_names=["feat", "probs"],
                          dynamic_axes={"x": {0: "batch"}}, opset_version=17, dynamo=False)
        export_s = time.perf_counter() - t0
        sess = ort.InferenceSession(buf.getvalue(), sess_options=session_options(1), providers=["CPUExecutionProvider"])
        xn = x.numpy()
        with torch.inference_mode():
            ref = model(x)[1].numpy()
            parity = float(np.abs(sess.run(["probs"], {"x": xn})[0] - ref).max())
            for _ in range(50):
                model(x)
                sess.run(None, {"x": xn})
            t_torch, t_ort = [], []
            for _ in range(iters):
                t0 = time.perf_counter()
                model(x)
                t_torch.append(time.perf_counter() - t0)
            for _ in range(iters):
                t0 = time.perf_counter()
                sess.run(None, {"x": xn})
                t_ort.append(time.perf_counter() - t0)
        out.append({"model": name, "torch_eager": stats(t_torch), "onnxruntime": stats(t_ort),
                    "max_abs_diff": parity, "export_s": export_s, "onnx_bytes": len(buf.getvalue())})
    return out


# ---- 2-4. child: no torch, one core ------------------------------------------------------
def hwm_kb() -> int:
    """Peak RSS of this process image. Not ru_maxrss: after fork+exec it keeps the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def child(args: argparse.Namespace) -> None:
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {0})
    from edge_agent.agent import Agent
    from edge_agent.config import AgentConfig
    from edge_agent.model import load_model
    from edge_agent.sources import Sample
    from lepton_tasks import load_task
    from shared.protocol.schemas import Manifest
    from shared.protocol.topics import Topics
    from shared.transport.mqtt import MqttClient, MqttSettings

    rel_dir = Path(args.releases)
    topics = Topics(args.root)
    rss_imports_kb = hwm_kb()  # agent code: ORT, cv2, numpy, pydantic
    task = load_task("digits")
    frames = task.dataset().raw  # the replay source's data (sklearn); a camera agent has no such cost
    rss_dataset_kb = hwm_kb()
    out: dict = {"affinity": sorted(os.sched_getaffinity(0))}

    # Baseline: the bare loop, same model, same frames.
    raw1 = (rel_dir / "v1.json").read_bytes()
    m1 = load_model((rel_dir / "v1.onnx").read_bytes(), Manifest.model_validate_json(raw1), raw1, threads=1)
    n, t0, c0 = 0, time.perf_counter(), cpu_s()
    while time.perf_counter() - t0 < args.seconds:
        m1.run(m1.pipeline(frames[n % len(frames)]))
        n += 1
    dt, dc = time.perf_counter() - t0, cpu_s() - c0
    out["bare_loop"] = {"frames": n, "fps": n / dt, "cpu_us_per_frame": dc / n * 1e6}

    # The agent, end to end.
    state = Path(tempfile.mkdtemp(prefix="bench-edge-"))
    cfg = AgentConfig.model_validate({
        "device": "bench-1", "root": args.root, "task": "digits", "stream": "front",
        "mqtt": {"port": args.port}, "state_dir": str(state),
        "source": {"type": "replay", "split": "all", "loop": True},
        "capture": {"mode": "lossless", "queue_size": 64, "start_after_model": True},
        "decision": {"policy": {"type": "max_prob", "threshold": args.threshold}, "audit_rate": 0.02,
                     "rate_limit": args.rate_limit, "burst": 20, "reply_deadline_s": 0.2},
        "features": {"batch_size": 32, "float16": True},
        "telemetry": {"interval_s": 1.0},
        # The bench's releases are unsigned (tests/edge/models.py); a real agent needs a key.
        "model": {"initial_model": str(rel_dir / "v1.onnx"), "initial_manifest": str(rel_dir / "v1.json"),
                  "intra_op_threads": 1, "allow_unsigned": True},
    })
    agent = Agent(cfg)
    stamps: list[float] = []
    inner = agent.process

    def timed(s: Sample) -> None:
        inner(s)
        stamps.append(time.monotonic())

    agent.process = timed  # type: ignore[method-assign]
    agent.start()
    assert agent.wait_model(30), "initial model did not load"
    time.sleep(0.5)
    f0, t0, c0 = agent.meter.frames, time.perf_counter(), cpu_s()
    u0 = agent.counters.snapshot()
    time.sleep(args.seconds)
    f1, dt, dc = agent.meter.frames, time.perf_counter() - t0, cpu_s() - c0
    u1 = agent.counters.snapshot()
    nf = f1 - f0
    up = {k.split(".", 1)[1]: (u1.get(k, 0) - u0.get(k, 0)) / nf for k in u1 if k.startswith("uplink_bytes.")}
    tele = agent.telemetry()
    out["agent"] = {"frames": nf, "fps": nf / dt, "cpu_us_per_frame": dc / nf * 1e6,
                    "escalation_ratio": tele.escalation_ratio, "dropped_frames": tele.dropped_frames,
                    "latency_ms_p50": tele.latency_ms_p50, "latency_ms_p99": tele.latency_ms_p99}
    raw_jpeg = agent.meter.raw_bytes / max(1, agent.meter.frames)
    c = agent.counters
    policy_ratio = (c.get("decision.uncertain") + c.get("decision.audit") + c.get("decision.rate_limited")) / max(
        1, agent.meter.inferred)
    hard_msg = c.get("uplink_bytes.hard") / max(1, c.get("outbox.sent.hard"))
    base = sum(v for k, v in up.items() if k != "hard")
    by_ratio = {f"{r:.3f}": base + r * hard_msg for r in sorted({round(policy_ratio, 3), 0.05, 0.01, 0.0})}
    out["uplink"] = {"bytes_per_sample_by_topic": up, "bytes_per_sample": sum(up.values()),
                     "bytes_per_sample_without_pred": sum(v for k, v in up.items() if k != "pred"),
                     "hard_message_bytes": hard_msg, "policy_escalation_ratio": policy_ratio,
                     "bytes_per_sample_at_escalation_ratio": by_ratio,
                     "raw_jpeg_bytes_per_frame": raw_jpeg, "jpeg_quality": cfg.telemetry.jpeg_quality,
                     "frame_shape": list(frames[0].shape), "escalation_ratio": tele.escalation_ratio,
                     "rate_limit_per_s": args.rate_limit}

    # Hot swaps at full load: publish v2..vK like the cloud worker does.
    pub = MqttClient(MqttSettings(port=args.port), client_id="bench-pub").start()
    assert pub.wait_connected(10)
    swap_from = len(agent.swaps)
    for v in range(2, args.swaps + 2):
        pub.publish(topics.artifact("digits", v), (rel_dir / f"v{v}.onnx").read_bytes(), qos=1, retain=True)
        pub.publish(topics.manifest("digits"), (rel_dir / f"v{v}.json").read_bytes(), qos=1, retain=True)
        deadline = time.monotonic() + 20
        while agent.active.version != v and time.monotonic() < deadline:  # type: ignore[union-attr]
            time.sleep(0.005)
        time.sleep(0.6)  # room for a control window between swaps
    pub.stop()
    t = np.asarray(stamps)
    gaps = np.diff(t)
    swaps = [s for s, _ in list(agent.swaps)[swap_from:]]
    at_swap, around = [], []
    mask = np.ones(len(gaps), bool)
    for s in swaps:
        i = int(np.searchsorted(t, s))
        if 0 < i < len(t):
            at_swap.append(t[i] - t[i - 1])
        w = (t[1:] >= s - 0.3) & (t[:-1] <= s + 0.05)
        mask &= ~w
        if w.any():
            around.append(gaps[w].max())
    # Control: windows of the same width between swaps (same load, same machine, no swap).
    control = []
    for a, b in zip(swaps, swaps[1:], strict=False):
        mid = (a + b) / 2
        w = (t[1:] >= mid - 0.175) & (t[:-1] <= mid + 0.175)
        if w.any() and b - a > 0.5:
            control.append(gaps[w].max())
    out["swap"] = {"swaps": len(swaps), "gap_at_swap": stats(at_swap), "worst_gap_while_building": stats(around),
                   "worst_gap_control_window": stats(control), "ordinary_gap": stats(gaps[mask]),
                   "errors": agent.counters.get("frames.inference_error") + agent.counters.get("model.errors"),
                   "rejected": agent.counters.total("model.rejected.")}
    agent.stop()
    out["rss_mb"] = {"after_imports": rss_imports_kb / 1024, "after_dataset": rss_dataset_kb / 1024,
                     "peak": hwm_kb() / 1024}
    out["torch_imported"] = "torch" in sys.modules
    print("CHILD_JSON " + json.dumps(out))


# ---- parent ---------------------------------------------------------------------------------
def make_releases(folder: Path, root: str, n: int) -> None:
    from shared.protocol.topics import Topics
    from tests.edge.models import release

    topics = Topics(root)
    for v in range(1, n + 1):
        rel = release(topics, "digits", v, seed=v)
        (folder / f"v{v}.onnx").write_bytes(rel.onnx)
        (folder / f"v{v}.json").write_bytes(rel.wire)


def run_child(args: argparse.Namespace, port: int, root: str, releases: Path) -> dict:
    cmd = [sys.executable, __file__, "--child", "--port", str(port), "--root", root, "--releases", str(releases),
           "--seconds", str(args.seconds), "--swaps", str(args.swaps), "--threshold", str(args.threshold),
           "--rate-limit", str(args.rate_limit)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("CHILD_JSON ")), None)
    if r.returncode != 0 or line is None:
        raise SystemExit(f"child failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return json.loads(line[len("CHILD_JSON "):])


def machine() -> dict:
    model = ""
    try:
        model = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                      if ln.startswith("model name")), "")
    except OSError:
        pass
    import onnxruntime

    info = {"cpu": model, "cpus": os.cpu_count(), "python": platform.python_version(), "onnxruntime":
            onnxruntime.__version__, "platform": platform.platform()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def main(argv: list[str] | None = None) -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="Small run (< 60 s).")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, help=argparse.SUPPRESS)
    p.add_argument("--root", default="lepton/v1/bench", help=argparse.SUPPRESS)
    p.add_argument("--releases", help=argparse.SUPPRESS)
    p.add_argument("--seconds", type=float, default=None, help="Seconds per throughput phase.")
    p.add_argument("--swaps", type=int, default=None, help="Hot swaps to measure.")
    p.add_argument("--iters", type=int, default=None, help="Timed inferences per runtime and model.")
    p.add_argument("--threshold", type=float, default=0.8, help="max_prob threshold (sets the escalation rate).")
    p.add_argument("--rate-limit", type=float, default=5.0, help="Escalations/s allowed (the config default).")
    args = p.parse_args(argv)
    if args.child:
        child(args)
        return 0
    args.seconds = args.seconds or (4.0 if args.quick else 15.0)
    args.swaps = args.swaps or (12 if args.quick else 60)
    args.iters = args.iters or (500 if args.quick else 5000)
    t_start = time.perf_counter()

    from shared.transport.broker import Broker

    with tempfile.TemporaryDirectory() as tmp:
        releases = Path(tmp) / "releases"
        releases.mkdir()
        root = f"lepton/v1/bench{os.getpid()}"
        make_releases(releases, root, args.swaps + 1)
        broker = Broker(Path(tmp) / "mq").start()
        try:
            if len(os.sched_getaffinity(0)) > 1 and broker.proc is not None:
                os.sched_setaffinity(broker.proc.pid, {1})
            pipeline = run_child(args, broker.port, root, releases)
        finally:
            broker.stop()
    ort_torch = bench_ort_vs_torch(args.iters)
    res = {"bench": "edge", "quick": args.quick, "machine": machine(), "seconds": args.seconds,
           "ort_vs_torch": ort_torch, **pipeline, "wall_s": time.perf_counter() - t_start}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(res, indent=2))
    print_table(res)
    print(f"\nwrote {RESULTS.relative_to(ROOT)} in {res['wall_s']:.1f}s")
    return 0


def print_table(r: dict) -> None:
    m = r["machine"]
    print(f"machine: {m['cpu']} ({m['cpus']} CPUs), onnxruntime {m['onnxruntime']}, torch {m.get('torch', '-')}")
    print("\n1. one thread, batch 1: onnxruntime vs PyTorch eager (baseline)")
    print(f"{'model':24} {'runtime':12} {'p50 us':>9} {'p99 us':>9} {'samples/s':>10}")
    for row in r["ort_vs_torch"]:
        for rt in ("torch_eager", "onnxruntime"):
            s = row[rt]
            print(f"{row['model']:24} {rt:12} {s['p50_us']:9.1f} {s['p99_us']:9.1f} {s['samples_per_s']:10.0f}")
        print(f"{'':24} speed-up p50 x{row['torch_eager']['p50_us'] / row['onnxruntime']['p50_us']:.1f}, "
              f"max |diff| {row['max_abs_diff']:.1e}")
    b, a = r["bare_loop"], r["agent"]
    print(f"\n2. one core (affinity {r['affinity']}), intra_op=1, digits 64x64 frames; torch imported: "
          f"{r['torch_imported']}")
    print(f"{'':34} {'frames/s':>10} {'CPU us/frame':>13}")
    print(f"{'bare preprocess+run (baseline)':34} {b['fps']:10.0f} {b['cpu_us_per_frame']:13.1f}")
    print(f"{'whole agent, end to end':34} {a['fps']:10.0f} {a['cpu_us_per_frame']:13.1f}")
    print(f"inference latency p50/p99 {a['latency_ms_p50'] * 1000:.0f}/{a['latency_ms_p99'] * 1000:.0f} us, "
          f"escalation ratio {a['escalation_ratio']:.3f}")
    rss = r["rss_mb"]
    print(f"peak RSS {rss['peak']:.0f} MB: agent imports {rss['after_imports']:.0f} MB, + packaged dataset for "
          f"replay {rss['after_dataset'] - rss['after_imports']:.0f} MB, + running {rss['peak'] - rss['after_dataset']:.0f} MB")
    s = r["swap"]
    print(f"\n3. hot swap under full load ({s['swaps']} swaps, errors {s['errors']}, rejected {s['rejected']})")
    for k in ("ordinary_gap", "gap_at_swap", "worst_gap_while_building", "worst_gap_control_window"):
        print(f"{k:28} p50 {s[k]['p50_us']:9.0f} us  p99 {s[k]['p99_us']:9.0f} us")
    u = r["uplink"]
    print(f"\n4. uplink per sample vs the raw frame as JPEG (q{u['jpeg_quality']}, frame {u['frame_shape']}): "
          f"{u['raw_jpeg_bytes_per_frame']:.0f} B")
    print(f"measured at full speed with rate limit {u['rate_limit_per_s']:g}/s (escalation ratio "
          f"{u['escalation_ratio']:.4f}):")
    for k, v in sorted(u["bytes_per_sample_by_topic"].items()):
        if v:
            print(f"  {k:12} {v:9.1f} B")
    print(f"  {'total':12} {u['bytes_per_sample']:9.1f} B  (without pred/: {u['bytes_per_sample_without_pred']:.1f} B)")
    print(f"at other escalation ratios (hard message {u['hard_message_bytes']:.0f} B; the policy alone would "
          f"escalate {u['policy_escalation_ratio']:.3f}):")
    for ratio, v in u["bytes_per_sample_at_escalation_ratio"].items():
        print(f"  ratio {ratio:>6}: {v:7.1f} B/sample = {v / u['raw_jpeg_bytes_per_frame']:.2f} x JPEG")


if __name__ == "__main__":
    sys.exit(main())
