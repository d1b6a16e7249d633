"""A whole stack of real processes to break on purpose: broker, worker, bridge and agents.

Used by the fault tests (tests/e2e/test_faults.py) and the fault benchmark (bench/bench_faults.py).
An always-connected observer records every QoS 1 message the agents got accepted by the broker
(event, hard, feat) and everything the bridge handed on (hub/infer, hub/batch), so a run can be
judged per (device, boot, seq): delivered, lost, or duplicated. The broker runs on the project's
own mosquitto/mosquitto.conf (30 s autosave) and keeps its port and data across restarts.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_cli import tomlgen
from lepton_cli.labeller import Labeller
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch, FusedBatch, HardSample
from shared.protocol.topics import Kind, Topics
from shared.security import signing
from shared.transport.broker import REPO_MOSQUITTO, Broker
from shared.transport.mqtt import Message, MqttClient, MqttSettings

REPO = Path(__file__).resolve().parents[2]
Key = tuple[str, int, int]  # (device, boot, seq)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Proc:
    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name, self.argv, self.log = name, argv, log
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as f:
            self.popen = subprocess.Popen(self.argv, cwd=REPO, stdout=f, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, start_new_session=True,
                                          env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def signal(self, sig: int, wait: float = 20.0) -> int | None:
        if self.popen is None or self.popen.poll() is not None:
            return self.popen.returncode if self.popen else None
        os.killpg(self.popen.pid, sig)
        try:
            return self.popen.wait(wait)
        except subprocess.TimeoutExpired:
            os.killpg(self.popen.pid, signal.SIGKILL)
            return self.popen.wait(5)

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Observed:
    """What the broker accepted from agents, and what came out of the bridge."""

    accepted: dict[str, set[Key]] = field(default_factory=lambda: defaultdict(set))  # by kind
    feat_samples: dict[Key, tuple[int, ...]] = field(default_factory=dict)
    infer: Counter = field(default_factory=Counter)  # Key -> copies on hub/infer
    batch_rows: Counter = field(default_factory=Counter)  # (device, sample) -> copies on hub/batch
    labelled: set[tuple[str, int, int]] = field(default_factory=set)  # (device, sample, label) on hub/batch
    hub_status: dict[str, Any] = field(default_factory=dict)
    worker_status: dict[str, Any] = field(default_factory=dict)
    # Final counters of each worker process, by the death message's time: a retained copy restored
    # by a restarted broker is the same death, not another process.
    worker_death: dict[float, dict[str, int]] = field(default_factory=dict)

    @property
    def worker_deaths(self) -> list[dict[str, int]]:
        return list(self.worker_death.values())
    telemetry: dict[str, Any] = field(default_factory=dict)  # device -> last Telemetry
    with_raw: set = field(default_factory=set)
    infer_raw: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, topics: Topics, m: Message) -> None:
        try:
            p = topics.parse(m.topic)
        except ValueError:
            return
        with self.lock:
            if p.kind is Kind.EVENT:
                ev = schemas.loads(m.payload, schemas.Event)
                self.accepted["event"].add((ev.device, ev.boot, ev.seq))
            elif p.kind is Kind.HARD:
                hs = HardSample.decode(m.payload)
                self.accepted["hard"].add((hs.device, hs.boot, hs.seq))
                if hs.raw is not None:
                    self.with_raw.add((hs.device, hs.boot, hs.seq))
            elif p.kind is Kind.FEAT:
                fb = FeatureBatch.decode(m.payload)
                key = (fb.device, fb.boot, fb.seq)
                self.accepted["feat"].add(key)
                self.feat_samples[key] = tuple(int(s) for s in fb.sample)
            elif p.kind is Kind.HUB_INFER:
                hs = HardSample.decode(m.payload)
                self.infer[(hs.device, hs.boot, hs.seq)] += 1
                if hs.raw is not None:
                    self.infer_raw.add((hs.device, hs.boot, hs.seq))
            elif p.kind is Kind.HUB_BATCH:
                b = FusedBatch.decode(m.payload)
                late = b.context_names.index("late_label") if "late_label" in b.context_names else -1
                for i in range(len(b.sample)):
                    dev, sample = b.devices[int(b.device_idx[i])], int(b.sample[i])
                    if late < 0 or b.ctx[i, late] == 0:  # label-only rows repeat a row on purpose
                        self.batch_rows[(dev, sample)] += 1
                    if b.label[i] >= 0:
                        self.labelled.add((dev, sample, int(b.label[i])))
            elif p.kind is Kind.HUB_STATUS and m.payload:
                self.hub_status = schemas.loads(m.payload, schemas.ServiceStatus).model_dump()
            elif p.kind is Kind.CLOUD_STATUS and m.payload:
                self.worker_status = schemas.loads(m.payload, schemas.ServiceStatus).model_dump()
                if self.worker_status["state"] == "offline" and self.worker_status["counters"]:
                    self.worker_death[self.worker_status["ts"]] = self.worker_status["counters"]
            elif p.kind is Kind.TELEMETRY:
                t = schemas.loads(m.payload, schemas.Telemetry)
                self.telemetry[t.device] = t

    def report(self) -> dict[str, Any]:
        """Per kind: accepted by the broker, and lost downstream (hard: hub/infer; feat: every row on hub/batch)."""
        with self.lock:
            hard = self.accepted["hard"]
            lost_hard = {k for k in hard if self.infer[k] == 0}
            lost_feat = {k for k in self.accepted["feat"]
                         if any(self.batch_rows[(k[0], s)] == 0 for s in self.feat_samples[k])}
            dup_rows = sum(1 for c in self.batch_rows.values() if c > 1)
            learned = sum(c.get("learn.rows.labelled", 0) for c in self.worker_deaths)
            copies = sum(c.get("learn.rows.duplicate", 0) for c in self.worker_deaths)
            return {"accepted": {k: len(v) for k, v in self.accepted.items()},
                    # escalations that carried their raw sample, and of those, the ones whose sample
                    # never reached hub/infer with it
                    "accepted_with_raw": len(self.with_raw), "lost_raw": len(self.with_raw - self.infer_raw),
                    "lost": {"hard": len(lost_hard), "feat": len(lost_feat)},
                    "lost_keys": {"hard": sorted(lost_hard), "feat": sorted(lost_feat)},
                    "duplicate_rows_on_hub_batch": dup_rows,
                    "duplicate_infer": sum(1 for c in self.infer.values() if c > 1),
                    "labelled_rows_on_hub_batch": len(self.labelled),
                    "worker_processes": len(self.worker_deaths),
                    "worker_learned_labelled": learned,  # summed over every worker process's final counters
                    "worker_skipped_copies": copies,
                    "agents": {d: {k: v for k, v in t.counters.items() if k.startswith("outbox.")}
                               for d, t in self.telemetry.items()}}


class FaultStack:
    """Start, break and restart the parts of a Lepton stack; every process is real."""

    def __init__(self, workdir: Path, *, agents: int = 2, fps: float = 25.0, task: str = "digits",
                 agent: dict | None = None, bridge: dict | None = None, worker: dict | None = None,
                 autosave_s: int | None = None, label_fraction: float = 0.3) -> None:
        self.dir = Path(workdir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.topics = Topics("lepton/v1")
        # The project's own broker config; a test may shorten the autosave to wait less for it.
        self.autosave_s = float(autosave_s or 30)
        self.broker = Broker(self.dir / "broker", config=REPO_MOSQUITTO / "mosquitto.conf",
                             extra=f"autosave_interval {autosave_s}" if autosave_s else "")
        self.label_fraction = label_fraction
        self.labeller: Labeller | None = None
        self.n_agents, self.fps, self.task = agents, fps, task
        self.over = {"agent": agent or {}, "bridge": bridge or {}, "worker": worker or {}}
        self.procs: dict[str, Proc] = {}
        self.observed = Observed()
        self.observer: MqttClient | None = None

    # ---- configs ---------------------------------------------------------------
    def _configs(self) -> dict[str, dict[str, Any]]:
        keys = self.dir / "keys"
        mqtt = {"host": "127.0.0.1", "port": self.broker.port}
        out = {
            "worker": _merge({"mqtt": mqtt, "worker_id": "worker-1", "tasks": [self.task],
                              "registry": str(self.dir / "registry"), "signing_key": str(keys / "signing.key"),
                              "public_key": str(keys / "signing.pub"), "status_interval_s": 1.0,
                              "training": {"bootstrap_epochs": 20, "cloud_epochs": 10}}, self.over["worker"]),
            "bridge": _merge({"mqtt": mqtt, "id": "bridge-1", "status_interval": 1.0}, self.over["bridge"]),
        }
        for i in range(1, self.n_agents + 1):
            out[f"agent-{i}"] = _merge({
                "device": f"cam-{i}", "mqtt": mqtt, "task": self.task, "stream": "cam",
                "source": {"type": "replay", "fps": self.fps, "loop": True, "shuffle_seed": i},
                "capture": {"start_after_model": True}, "model": {"public_key": str(keys / "signing.pub")},
                "decision": {"reply_deadline_s": 1.0, "rate_limit": self.fps},
                "telemetry": {"interval_s": 1.0}, "state_dir": str(self.dir / "agents" / f"cam-{i}")},
                self.over["agent"])
        return out

    def _argv(self, name: str, conf: Path) -> list[str]:
        role = name.split("-")[0]
        mod = {"worker": ["cloud_worker", "run"], "bridge": ["hub_bridge"], "agent": ["edge_agent"]}[role]
        return [sys.executable, "-m", *mod, "--config", str(conf)]

    # ---- lifecycle ---------------------------------------------------------------
    def start(self, timeout: float = 180.0) -> FaultStack:
        signing.generate_keypair(self.dir / "keys" / "signing.key", self.dir / "keys" / "signing.pub")
        self.broker.start()
        self.broker_started = time.monotonic()
        self.observer = MqttClient(MqttSettings(port=self.broker.port, backoff_min=0.05, backoff_max=0.5),
                                   client_id="fault-observer")
        for flt in (self.topics.edge_kind(Kind.EVENT), self.topics.edge_kind(Kind.HARD),
                    self.topics.edge_kind(Kind.FEAT), self.topics.hub_infers(), self.topics.hub_batches(),
                    self.topics.edge_kind(Kind.TELEMETRY), self.topics.cloud_status("worker-1")):
            self.observer.subscribe(flt, 1, lambda m: self.observed.on(self.topics, m))
        self.observer.subscribe(self.topics.hub_status(), 1, lambda m: self.observed.on(self.topics, m))
        self.observer.start()
        assert self.observer.wait_connected(10)
        for name, cfg in self._configs().items():
            conf = self.dir / f"{name}.toml"
            conf.write_text(tomlgen.dumps(cfg))
            self.procs[name] = Proc(name, self._argv(name, conf), self.dir / f"{name}.log")
        self.procs["worker"].start()
        self.procs["bridge"].start()
        manifest = self.dir / "registry" / self.task / "v1.json"
        self._wait(lambda: manifest.exists(), timeout, "model v1 from the worker")
        for name, p in self.procs.items():
            if name.startswith("agent"):
                p.start()
        self._wait(lambda: len(self.observed.accepted["feat"]) >= self.n_agents, timeout, "agents sending")
        if self.label_fraction > 0:
            self.labeller = Labeller(MqttSettings(port=self.broker.port, backoff_min=0.05, backoff_max=0.5),
                                     self.topics, fraction=self.label_fraction, delay=0.5)
            self.labeller.start()
        return self

    def _wait(self, pred, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            dead = [p for p in self.procs.values() if p.popen is not None and not p.alive()
                    and p.popen.returncode not in (0, None)]
            if dead:
                raise AssertionError(f"{dead[0].name} exited {dead[0].popen.returncode}:\n{dead[0].tail()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.1)

    def stop(self, name: str) -> int | None:
        return self.procs[name].signal(signal.SIGTERM)

    def resume(self, name: str) -> None:
        self.procs[name].start()

    def kill_broker(self) -> None:
        self.broker.kill()  # SIGKILL: no save on the way out

    def restart_broker(self) -> None:
        self.broker.start()
        self.broker_started = time.monotonic()

    def until_autosave(self) -> float:
        """Seconds to the broker's next autosave (mosquitto saves every `autosave_interval` from its start)."""
        age = time.monotonic() - self.broker_started
        return self.autosave_s - (age % self.autosave_s)

    def crash_broker_with_backlog(self, *, backlog_s: float = 21.0, also_stop: tuple[str, ...] = (),
                                  margin_s: float = 1.0) -> dict[str, float]:
        """The scenario of the broker crash: stop the bridge (and ``also_stop``) so a backlog queues in
        its durable session, SIGKILL the broker ``margin_s`` before its next autosave, restart it and them."""
        wait = self.until_autosave() - margin_s - backlog_s
        while wait < 0:
            wait += self.autosave_s
        time.sleep(wait)
        t0 = time.monotonic()
        for name in ("bridge", *also_stop):
            self.stop(name)
        time.sleep(max(0.0, backlog_s - (time.monotonic() - t0)))
        self.kill_broker()
        killed = time.monotonic()
        self.restart_broker()
        for name in ("bridge", *also_stop):
            self.resume(name)
        return {"backlog_s": killed - t0, "down_s": time.monotonic() - killed}

    def shutdown(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        if self.labeller is not None:
            self.labeller.stop()
        for name in sorted(self.procs, key=lambda n: {"agent": 0, "bridge": 1, "worker": 2}[n.split("-")[0]]):
            codes[name] = self.procs[name].signal(signal.SIGTERM)
        if self.observer is not None:
            self.observer.stop()
        self.broker.stop()
        return codes

    def kill_all(self) -> None:
        if self.labeller is not None:
            self.labeller.stop()
        for p in self.procs.values():
            p.signal(signal.SIGKILL, 5)
        if self.observer is not None:
            self.observer.stop()
        self.broker.kill()


def outbox_rows(db: Path) -> list[tuple[str, int, int, float]]:
    """(class, boot, seq, created) of the QoS 1 rows an agent still holds (it has no custody for them)."""
    import sqlite3

    con = sqlite3.connect(str(db))
    try:
        return [tuple(r) for r in con.execute("SELECT cls, boot, seq, created FROM outbox WHERE qos>0")]
    finally:
        con.close()
