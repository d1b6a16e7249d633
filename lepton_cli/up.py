"""`lepton up`: the whole stack on one machine, no Docker.

Starts mosquitto (system binary, mosquitto/mosquitto.conf, chosen or free port), a cloud worker
(bootstraps v1, then learns), the hub bridge, N simulated edge agents replaying real packaged data
through the real agent pipeline, and a labeller that corrects a fraction of predictions after a
delay. Services run as real processes with generated TOML configs under the run directory; the
fleet view and labeller run in this process. Ctrl-C, SIGTERM or --duration end it cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_cli import tomlgen
from lepton_cli.labeller import Labeller
from lepton_cli.monitor import Watcher, table
from lepton_tasks import TaskSpecError, load_task
from shared import signing
from shared.broker import REPO_MOSQUITTO, Broker, BrokerUnavailable
from shared.mqtt import MqttSettings
from shared.topics import DEFAULT_ROOT, Topics

log = logging.getLogger("lepton.up")


class UpError(RuntimeError):
    """Something the user must fix; printed as one line."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        logf = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.popen = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        logf.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0fs; killing it", self.name, timeout)
                self.popen.kill()
                self.popen.wait(5)
        return self.popen.returncode

    def tail(self, n: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


def _configs(args: argparse.Namespace, run: Path, port: int, keys: Path) -> dict[str, dict[str, Any]]:
    mqtt = {"host": "127.0.0.1", "port": port}
    tasks = {ref: load_task(ref) for ref in args.task}  # a name or a spec path each
    out: dict[str, dict[str, Any]] = {
        "worker": {
            "mqtt": dict(mqtt), "root": args.root, "worker_id": "worker-1", "tasks": list(tasks),
            "registry": str(run / "registry"), "signing_key": str(keys / "signing.key"),
            "public_key": str(keys / "signing.pub"), "status_interval_s": 2.0,
            "triggers": {"min_new_labels": args.retrain_labels, "interval_s": 30.0, "cooldown_s": 5.0},
        },
        "bridge": {"mqtt": dict(mqtt), "root": args.root, "id": "bridge-1", "status_interval": 2.0},
    }
    n = 0
    for ref, task in tasks.items():
        d = task.spec.decision
        for i in range(1, args.agents + 1):
            n += 1
            prefix = ("cam" if task.kind == "image" else "sensor") if len(tasks) == 1 else task.name
            device = f"{prefix}-{i}"
            out[f"agent-{device}"] = {
                "device": device, "root": args.root, "mqtt": dict(mqtt), "task": task.name,
                "stream": "cam" if task.kind == "image" else "win",
                # Each agent replays its share of the stream in order, so a drift phase comes to all at once.
                "source": {"type": "replay", "task": ref, "fps": args.fps, "loop": True, "part": i - 1,
                           "parts": args.agents},
                "capture": {"start_after_model": True},
                "model": {"public_key": str(keys / "signing.pub")},
                "decision": {"reply_deadline_s": 1.0, "rate_limit": max(2.0, args.fps / 2),
                             "policy": {"type": d.policy, "threshold": d.threshold}},
                "telemetry": {"interval_s": 2.0},
                "state_dir": str(run / "agents" / device),
            }
    return out


def _command(name: str, conf: Path) -> list[str]:
    if name == "worker":
        return [sys.executable, "-m", "cloud_worker", "run", "--config", str(conf)]
    if name == "bridge":
        return [sys.executable, "-m", "hub_bridge", "--config", str(conf)]
    return [sys.executable, "-m", "edge_agent", "--config", str(conf)]


class Stack:
    """Owns every process of a local stack; start() in dependency order, stop() in reverse."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.run_dir = Path(args.workdir or Path("var") / "up" / time.strftime("%Y%m%d-%H%M%S")).resolve()
        self.broker: Broker | None = None
        self.procs: list[Proc] = []
        self.labeller: Labeller | None = None
        self.watcher: Watcher | None = None
        self.topics = Topics(args.root)

    def start(self) -> None:
        a = self.args
        self.run_dir.mkdir(parents=True, exist_ok=True)
        keys = self.run_dir / "keys"
        if not (keys / "signing.key").exists():
            signing.generate_keypair(keys / "signing.key", keys / "signing.pub")
        self.broker = Broker(self.run_dir / "broker", port=a.port, config=REPO_MOSQUITTO / "mosquitto.conf")
        self.broker.start()
        port = self.broker.port
        assert port is not None
        mqtt = MqttSettings(port=port)
        self.watcher = Watcher(mqtt, self.topics).start()
        for name, cfg in _configs(a, self.run_dir, port, keys).items():
            conf = self.run_dir / f"{name}.toml"
            conf.write_text(tomlgen.dumps(cfg))
            self.procs.append(Proc(name, _command(name.split("-")[0], conf), self.run_dir / f"{name}.log"))
        for p in self.procs:
            p.start()
        self.labeller = Labeller(mqtt, self.topics, fraction=a.label_fraction, delay=a.label_delay)
        self.labeller.start()

    def check(self) -> None:
        for p in self.procs:
            if not p.alive():
                code = p.popen.returncode if p.popen else None
                raise UpError(f"{p.name} exited with code {code}; its log ({p.log_path}) ends:\n{p.tail()}")

    def stop(self) -> dict[str, int | None]:
        codes: dict[str, int | None] = {}
        # Agents first (they publish their death), then the bridge, then the worker.
        for p in sorted(self.procs, key=lambda p: {"agent": 0, "bridge": 1, "worker": 2}[p.name.split("-")[0]]):
            codes[p.name] = p.stop()
        if self.labeller is not None:
            self.labeller.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.broker is not None:
            self.broker.stop()
        return codes


def _validate(args: argparse.Namespace) -> str | None:
    args.task = args.task or ["digits"]
    for ref in args.task:
        try:
            load_task(ref)
        except TaskSpecError as exc:
            return str(exc)
    if args.agents < 1:
        return "--agents must be at least 1"
    if args.fps <= 0:
        return "--fps must be positive"
    if not 0.0 <= args.label_fraction <= 1.0:
        return "--label-fraction must be within 0..1"
    if args.port is not None and not 0 < args.port < 65536:
        return "--port must be within 1..65535"
    return None


def run(args: argparse.Namespace) -> int:
    problem = _validate(args)
    if problem:
        print(f"lepton up: {problem}", file=sys.stderr)
        return 2
    stack = Stack(args)
    stopping = {"flag": False}

    def on_signal(signum: int, frame: object) -> None:
        stopping["flag"] = True

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    rc = 0
    try:
        try:
            stack.start()
        except BrokerUnavailable as exc:
            print(f"lepton up: {exc}", file=sys.stderr)
            return 69
        port = stack.broker.port if stack.broker else None
        print(f"lepton up: broker on 127.0.0.1:{port}, run dir {stack.run_dir}\n"
              f"  watch: mosquitto_sub -v -p {port} -t '{args.root}/#'   or   lepton monitor --port {port}",
              flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        live = None
        if sys.stdout.isatty() and not args.no_tui:
            from rich.live import Live

            live = Live(table(stack.watcher.stats), refresh_per_second=2)
            live.start()
        last_print = 0.0
        try:
            while not stopping["flag"] and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.5)
                stack.check()
                if live is not None:
                    live.update(table(stack.watcher.stats))
                elif time.monotonic() - last_print >= args.print_every:
                    last_print = time.monotonic()
                    s = stack.watcher.stats.summary()
                    print(f"[{time.strftime('%H:%M:%S')}] models={ {t: m['version'] for t, m in s['models'].items()} } "
                          f"preds={s['predictions']} joint_acc={s['accuracy_joint']} "
                          f"edge_acc={s['accuracy_edge_only']} escalation={s['escalation_ratio']} "
                          f"uplink/raw={s['uplink_vs_raw']}", flush=True)
        finally:
            if live is not None:
                live.stop()
    except UpError as exc:
        print(f"lepton up: {exc}", file=sys.stderr)
        rc = 1
    finally:
        summary = stack.watcher.stats.summary() if stack.watcher else {}
        labeller = stack.labeller.counters.snapshot() if stack.labeller else {}
        codes = stack.stop()
        for s, h in old.items():
            signal.signal(s, h)
    summary["labeller"] = labeller
    summary["exit_codes"] = codes
    summary["run_dir"] = str(stack.run_dir)
    if any(c not in (0, None) for c in codes.values()) and rc == 0:
        rc = 1
    print(json.dumps(_short(summary), indent=2))
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=2))
        print(f"summary written to {args.summary}")
    return rc


def _short(s: dict[str, Any]) -> dict[str, Any]:
    keys = ("accuracy_per_version_joint", "accuracy_per_version_edge_only", "accuracy_joint", "accuracy_edge_only",
            "escalation_ratio", "cloud_answers", "uplink_bytes", "raw_frame_bytes", "uplink_vs_raw", "hot_swaps",
            "models_rejected", "frames_dropped", "qos1_seq_gaps", "qos1_duplicates", "models", "exit_codes")
    return {k: s.get(k) for k in keys}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run broker, bridge, worker, simulated agents and a labeller on this machine")
    p.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"topic root (default {DEFAULT_ROOT})")
    p.add_argument("--task", action="append", metavar="NAME|PATH",
                   help="task to run: a name (`lepton tasks list`) or a task spec file; repeat for several "
                        "(default: digits)")
    p.add_argument("--agents", type=int, default=2, help="simulated agents per task (default 2)")
    p.add_argument("--fps", type=float, default=10.0, help="frames (or windows) per second per agent")
    p.add_argument("--label-fraction", type=float, default=0.3, help="fraction of samples the labeller corrects")
    p.add_argument("--label-delay", type=float, default=2.0, help="seconds before a label is published")
    p.add_argument("--retrain-labels", type=int, default=100, help="new labels that trigger a retrain")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--summary", default=None, help="write the final summary as JSON to this file")
    p.add_argument("--workdir", default=None, help="run directory (configs, logs, registry); default var/up/<time>")
    p.add_argument("--no-tui", action="store_true", help="print a status line instead of the live table")
    p.add_argument("--print-every", type=float, default=10.0, help="seconds between status lines without the TUI")
    p.set_defaults(func=run)
