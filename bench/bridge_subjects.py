"""The subjects of the bridge benchmark, each in its own process: a plain paho receiver, a naive
re-publisher, the hub bridge, and a worker that acknowledges every fused batch; and CPU accounting
from /proc (per process, per thread, and the whole box, steal time apart).

Used by bench/bench_bridge.py, bench/bridge_fleet.py and bench/bench_custody.py.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from pathlib import Path

BENCH_ROOT = "lepton/v1/bench"
ROWS, DIM = 4, 32  # feature payload: 4 rows x 32 float32 (~1.1 KB)


def cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds per Python thread name (Linux /proc, matched by native id), to see which thread saturates."""
    import threading

    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = names.get(int(task.name), "other")
        fields = stat[stat.rindex(")") + 2:].split()
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def box_busy() -> tuple[float, float]:
    """(busy, total) CPU jiffies of the whole machine so far (/proc/stat), for how busy the box was."""
    t = box_times()
    return t["busy"] + t["steal"], t["total"]


def box_times() -> dict[str, int]:
    """CPU jiffies of the whole machine so far (/proc/stat): busy (without steal), steal (time the
    hypervisor gave our vCPUs to someone else: a noisy neighbour), total."""
    f = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    steal = f[7] if len(f) > 7 else 0
    return {"busy": sum(f) - f[3] - f[4] - steal, "steal": steal, "total": sum(f)}


def proc_cpu_s(pid: int) -> float:
    """CPU seconds of a process so far (all threads); 0.0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def rss_mb() -> dict[str, float]:
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("VmRSS", "VmHWM")):
            out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


# ---- subjects (each runs in its own process, controlled over a pipe) -------------------------
def subject(kind: str, port: int, qos: int, conn, bridge_id: str = "bench", share: str | None = None,
            custody: str = "worker", custody_settings: dict | None = None) -> None:
    import paho.mqtt.client as paho

    stats = {"received": 0, "published": 0}
    if kind in ("recv", "repub"):
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"{kind}-{os.getpid()}", protocol=paho.MQTTv5)
        c.max_inflight_messages_set(1000)
        c.max_queued_messages_set(0)

        if kind == "recv":
            def on_message(cl, u, m):
                stats["received"] += 1
        else:
            def on_message(cl, u, m):
                stats["received"] += 1
                cl.publish(BENCH_ROOT + "/naive/out", m.payload, qos=m.qos)
                stats["published"] += 1

        c.on_message = on_message
        c.connect("127.0.0.1", port)
        import socket
        c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.subscribe(BENCH_ROOT + "/edge/+/feat/+", qos=qos)
        c.loop_start()
        time.sleep(0.3)
        conn.send("ready")
        while True:
            cmd = conn.recv()
            if cmd == "stop":
                c.disconnect()
                c.loop_stop()
                conn.send("bye")
                return
            conn.send(dict(stats))
    if kind == "worker":
        return worker_subject(port, conn)
    from hub_bridge.bridge import HubBridge
    from hub_bridge.config import BridgeConfig
    from shared.transport.mqtt import MqttSettings

    cfg = BridgeConfig(root=BENCH_ROOT, id=bridge_id, mqtt=MqttSettings(port=port), share_group=share,
                       status_interval=1.0, session_expiry=0, custody=dict(features=custody, **(custody_settings or {})),
                       fusion=dict(batch_size=256, batch_age=0.2, label_wait=0.2, window=30))
    import gc

    pauses: list[float] = []
    t_gc = [0.0]

    def on_gc(phase, info):  # the interpreter stops every thread for a collection: how long, how often
        if phase == "start":
            t_gc[0] = time.perf_counter()
        elif info.get("generation") == 2 or time.perf_counter() - t_gc[0] > 0.002:
            pauses.append(time.perf_counter() - t_gc[0])

    gc.callbacks.append(on_gc)
    b = HubBridge(cfg).start()
    b.wait_connected(10)
    time.sleep(0.3)
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            b.stop()
            conn.send("bye")
            return
        counters, gauges = b.snapshot()
        conn.send({"counters": counters, "gauges": gauges, "rss": rss_mb(), "cpu_s": cpu_s(),
                   "threads": thread_cpu(), "gc_pauses_ms": [round(x * 1e3, 2) for x in pauses[-50:]]})


def worker_subject(port: int, conn) -> None:
    """A cloud worker's custody half: takes every fused batch and acknowledges it (BatchAck on
    hub/ack/{bridge}) every 0.1 s, as a worker does after saving its buffer; learns nothing."""
    import socket
    import threading

    import paho.mqtt.client as paho

    from shared.protocol import codec, schemas
    from shared.protocol.dedup import SeqSet
    from shared.protocol.topics import Topics

    t = Topics(BENCH_ROOT)
    lock = threading.Lock()
    unacked: dict[tuple[str, int, str], SeqSet] = {}
    stats = {"batches": 0, "acks": 0, "rows": 0}

    def on_message(cl, u, m):
        meta = codec.peek_meta(m.payload)
        if meta.get("kind") != "fused":
            return
        with lock:
            unacked.setdefault((meta["bridge"], int(meta["boot"]), meta["task"]), SeqSet()).add(int(meta["seq"]))
            stats["batches"] += 1

    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"worker-{os.getpid()}", protocol=paho.MQTTv5)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    c.on_message = on_message
    c.connect("127.0.0.1", port)
    c.socket().setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.subscribe(str(t.hub_batches()), qos=1)
    c.loop_start()
    stop = threading.Event()

    def acker() -> None:
        while not stop.wait(0.1):
            with lock:
                pending = dict(unacked)
                unacked.clear()
            for (bridge, boot, task), seqs in pending.items():
                ack = schemas.BatchAck(bridge=bridge, boot=boot, task=task, ranges=seqs.ranges()[:schemas.MAX_RANGES],
                                       worker="bench", ts=time.time())
                c.publish(str(t.hub_ack(bridge)), schemas.dumps(ack), qos=1)
                stats["acks"] += 1

    th = threading.Thread(target=acker, daemon=True)
    th.start()
    time.sleep(0.3)
    conn.send("ready")
    while True:
        cmd = conn.recv()
        if cmd == "stop":
            stop.set()
            th.join(2)
            c.disconnect()
            c.loop_stop()
            conn.send("bye")
            return
        conn.send(dict(stats))


class Subject:
    def __init__(self, kind: str, port: int, qos: int = 1, **kw) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=subject, args=(kind, port, qos, child), kwargs=kw, daemon=True)
        self.proc.start()
        if not self.conn.poll(60) or self.conn.recv() != "ready":
            raise RuntimeError(f"subject {kind} did not start")

    def stats(self) -> dict:
        self.conn.send("stats")
        return self.conn.recv()

    def cpu_s(self) -> float:
        """CPU seconds of the subject's process so far (all threads)."""
        return proc_cpu_s(self.proc.pid)

    def stop(self) -> None:
        try:
            self.conn.send("stop")
            self.conn.poll(15) and self.conn.recv()
        except (OSError, EOFError):  # it is gone already (a signal to the whole process group)
            pass
        finally:
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()
