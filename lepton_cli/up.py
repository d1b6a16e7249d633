"""`lepton up`: the whole stack on one machine, no Docker.

Starts mosquitto (system binary, mosquitto/mosquitto.conf, chosen or free port), a cloud worker
(bootstraps v1, then learns), the hub bridge, N simulated edge agents replaying real packaged data
through the real agent pipeline, and a labeller that corrects a fraction of predictions after a
delay. Services run as real processes with generated TOML configs under the run directory; the
fleet view and labeller run in this process. Ctrl-C, SIGTERM or --duration end it cleanly.

With `--secure` the broker runs mosquitto/secure.conf instead: a CA made on the fly, an
identity for every service and device, TLS and the dynamic-security ACLs (lepton_cli/secure_stack.py).
The fleet view is sampled every `--sample-every` seconds into the summary's `timeline`, which
`--report FILE.html` (or `lepton report SUMMARY.json`) turns into plots (lepton_views/report.py).
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

from lepton_cli import tomlgen, up_metrics
from lepton_cli.fleettable import worker_short
from lepton_cli.hints import command, mosquitto_sub
from lepton_cli.labeller import Labeller
from lepton_cli.monitor import Watcher, status_line, table
from lepton_cli.pki import PkiError, write_private_bytes
from lepton_cli.secure_broker import CredentialError
from lepton_cli.secure_stack import SecureAccess
from lepton_cli.upsummary import short_summary, shown, start_lines, where
from lepton_tasks import TaskSpecError, load_task, require_live
from shared.process.cli_help import HelpFormatter
from shared.protocol.topics import DEFAULT_ROOT, Topics
from shared.security import signing
from shared.transport.broker import REPO_MOSQUITTO, Broker, BrokerUnavailable
from shared.transport.mqtt import MqttSettings

log = logging.getLogger("lepton.up")


# Seconds a service has to end after SIGTERM before `lepton up` kills it; each role's own stop takes
# at most half of it under a CPU hog (tests/stops/).
KILL_TIMEOUT_S = 15.0


class UpError(RuntimeError):
    """Something the user must fix; printed as one line."""


@dataclass
class Proc:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    terminated: bool = False

    def start(self) -> None:
        logf = open(self.log_path, "ab")
        env = dict(os.environ, PYTHONUNBUFFERED="1", **self.env)
        self.popen = subprocess.Popen(self.argv, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env=env, start_new_session=True)
        logf.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def terminate(self) -> None:
        """SIGTERM once: services take a second one as "stop now" (shared/process/service.py)."""
        if self.popen is not None and self.popen.poll() is None and not self.terminated:
            self.terminated = True
            self.popen.send_signal(signal.SIGTERM)

    def stop(self, timeout: float = KILL_TIMEOUT_S) -> int | None:
        """SIGTERM (unless sent already), then wait; kill after ``timeout``."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.terminate()
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


class PlainAccess:
    """The dev broker (mosquitto/mosquitto.conf): anonymous, loopback only."""

    def __init__(self, port: int) -> None:
        self.port = port

    def service(self, name: str) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    def device(self, device: str) -> dict[str, Any]:
        return {"host": "127.0.0.1", "port": self.port}

    def bridge_extra(self) -> dict[str, Any]:
        return {}


def _devices(args: argparse.Namespace) -> list[tuple[str, str, int]]:
    """(task reference, device id, its place among its task's agents) of every simulated agent."""
    tasks = {ref: load_task(ref) for ref in args.task}  # a name or a spec path each
    out = []
    for ref, task in tasks.items():
        prefix = ("cam" if task.kind == "image" else "sensor") if len(tasks) == 1 else task.name
        out += [(ref, f"{prefix}-{i}", i - 1) for i in range(1, args.agents + 1)]
    return out


def _configs(args: argparse.Namespace, run: Path, access: PlainAccess | SecureAccess,
             keys: Path, metrics: dict[str, int] | None = None) -> dict[str, dict[str, Any]]:
    metrics = metrics or {}
    out: dict[str, dict[str, Any]] = {
        "worker": {
            "mqtt": access.service("worker"), "root": args.root, "worker_id": "worker-1", "tasks": list(args.task),
            "registry": str(run / "registry"), "signing_key": str(keys / "signing.key"),
            "public_key": str(keys / "signing.pub"), "status_interval_s": 2.0,
            "triggers": {"min_new_labels": args.retrain_labels, "interval_s": 30.0, "cooldown_s": 5.0},
            **({"rollout": r} if (r := rollout_settings(args)) else {}),
            **up_metrics.settings(metrics, "worker"),
        },
        "bridge": {"mqtt": access.service("bridge"), "root": args.root, "id": "bridge-1", "status_interval": 2.0,
                   **access.bridge_extra(), **up_metrics.settings(metrics, "bridge")},
    }
    for ref, device, part in _devices(args):
        task = load_task(ref)
        d = task.spec.decision
        out[f"agent-{device}"] = {
            "device": device, "root": args.root, "mqtt": access.device(device), "task": task.name,
            "stream": "cam" if task.kind == "image" else "win",
            # Each agent replays its share of the stream in order, so a drift phase comes to all at once.
            "source": {"type": "replay", "task": ref, "fps": args.fps, "loop": True, "part": part,
                       "parts": args.agents},
            "capture": {"start_after_model": True},
            "model": {"public_key": str(keys / "signing.pub")},
            "decision": {"reply_deadline_s": 1.0, "rate_limit": max(2.0, args.fps / 2), "budget": d.budget,
                         "policy": {"type": d.policy, "threshold": d.threshold}},
            "telemetry": {"interval_s": 2.0},
            "state_dir": str(run / "agents" / device),
            **({"home_assistant": {"enabled": True}} if args.home_assistant else {}),
        }
    return out


def home_assistant_lines(port: int | None, secure: bool) -> list[str]:
    """How to point a Home Assistant at this run's broker (its devices announce themselves there)."""
    if secure:
        return ["home assistant: the agents announce themselves; give Home Assistant a homeassistant_<name> "
                "identity (`lepton provision homeassistant_1`) and the broker's CA (docs/INTEGRATIONS.md)"]
    return [f"home assistant: Settings > Devices & services > Add integration > MQTT, broker 127.0.0.1, port {port} "
            "(no credentials); each agent appears as a device (docs/INTEGRATIONS.md)"]


# `--rollout` plan keys -> the worker's RolloutSettings fields; defaults sized for a run of a few minutes.
ROLLOUT_KEYS = {"canary": "stages", "then": "stages", "margin": "margin", "alpha": "alpha", "metric": "metric",
                "min-labels": "min_labels", "min-samples": "min_samples", "min-stage": "min_stage_s",
                "max-stage": "max_stage_s"}
ROLLOUT_DEMO = {"margin": 0.05, "min_labels": 40, "min_samples": 100, "min_stage_s": 15.0, "max_stage_s": 90.0}


def add_rollout_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rollout", metavar="PLAN", default=None,
                   help="release each new model in stages, judged in the field (docs/WORKER.md): comma-separated "
                        "key=value, e.g. canary=40%% (a share of the fleet by hash ring, or a group such as "
                        "site:garage), then=50%%:100%% (further stages; default 100%%), margin=0.05, min-labels=40, "
                        "min-samples=100, min-stage=15 (s), max-stage=90 (s), metric=accuracy|cloud_agreement, "
                        "alpha=0.05")
    p.add_argument("--inject-bad-release", nargs="?", type=int, const=2, default=0, metavar="N",
                   help="demo, with --rollout: the Nth release (default the 2nd) is trained on wrong labels and "
                        "released although the worker's gate refuses it, for the field judge to roll back")


def rollout_settings(args: argparse.Namespace) -> dict[str, Any] | None:
    """The worker's `rollout` table from --rollout / --inject-bad-release; ValueError says what is wrong."""
    plan, bad = getattr(args, "rollout", None), getattr(args, "inject_bad_release", 0) or 0
    if bad and not plan:
        raise ValueError("--inject-bad-release needs --rollout (the bad release is caught by the staged rollout)")
    if bad < 0:
        raise ValueError("--inject-bad-release must be a positive release number")
    if not plan:
        return None
    out: dict[str, Any] = {"enabled": True, **ROLLOUT_DEMO, "inject_bad_release": bad}
    first, then = "5%", ["100%"]
    for item in (x.strip() for x in plan.split(",") if x.strip()):
        key, sep, value = item.partition("=")
        if not sep or key not in ROLLOUT_KEYS:
            raise ValueError(f"--rollout: {item!r} is not one of {', '.join(k + '=' for k in ROLLOUT_KEYS)}")
        if key == "canary":
            first = value
        elif key == "then":
            then = [v for v in value.split(":") if v]
        else:
            out[ROLLOUT_KEYS[key]] = value
    out["stages"] = [first, *then]
    from pydantic import ValidationError

    from cloud_worker.config import RolloutSettings

    try:
        checked = RolloutSettings.model_validate(out)
    except ValidationError as exc:
        from shared.process.config_errors import describe_one

        raise ValueError(f"--rollout: {describe_one(RolloutSettings, exc.errors()[0], out)[1]}") from None
    return checked.model_dump()


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
        self.secure: SecureAccess | None = None
        self.procs: list[Proc] = []
        self.labeller: Labeller | None = None
        self.console = None  # lepton_console.service.ConsoleService (start_console)
        self.person = None  # lepton_console.person.QueuePerson (--labeller queue)
        self.watcher: Watcher | None = None
        self.metrics: dict[str, int] = {}  # role -> its /metrics port (--no-metrics: none)
        self.scrape_config: Path | None = None
        self.topics = Topics(args.root)

    def _start_broker(self) -> PlainAccess | SecureAccess:
        a = self.args
        if a.secure:
            self.secure = SecureAccess(self.run_dir / "secure", a.root, [d for _, d, _ in _devices(a)])
            self.secure.prepare()
            self.broker = self.secure.start_broker(self.run_dir / "broker", a.port)
            return self.secure
        self.broker = Broker(self.run_dir / "broker", port=a.port, config=REPO_MOSQUITTO / "mosquitto.conf")
        self.broker.start()
        assert self.broker.port is not None
        return PlainAccess(self.broker.port)

    def start(self) -> None:
        a = self.args
        self.run_dir.mkdir(parents=True, exist_ok=True)
        keys = self.run_dir / "keys"
        if not (keys / "signing.key").exists():
            signing.generate_keypair(keys / "signing.key", keys / "signing.pub")
        access = self._start_broker()
        self.watcher = Watcher(MqttSettings(**access.service("watcher")), self.topics).start()
        self.metrics = up_metrics.metrics_ports(not getattr(a, "no_metrics", False))
        self.scrape_config = up_metrics.write_scrape_config(self.run_dir, self.metrics)
        for name, cfg in _configs(a, self.run_dir, access, keys, self.metrics).items():
            conf = self.run_dir / f"{name}.toml"
            write_private_bytes(conf, tomlgen.dumps(cfg).encode())  # secure runs put passwords in it
            self.procs.append(Proc(name, _command(name.split("-")[0], conf), self.run_dir / f"{name}.log"))
        for p in self.procs:
            p.start()
        if a.labeller == "random":
            self.labeller = Labeller(MqttSettings(**access.service("labeller")), self.topics,
                                     fraction=a.label_fraction, delay=a.label_delay)
            self.labeller.start()
        self.console = start_console(a, access, self.run_dir, self.metrics)
        if a.labeller == "queue":
            self.person = start_person(self.console, a.person_rate)

    def check(self) -> None:
        for p in self.procs:
            if not p.alive():
                code = p.popen.returncode if p.popen else None
                raise UpError(f"{p.name} exited with code {code}; its log ({p.log_path}) ends:\n{p.tail()}")

    def stop(self, say=None) -> dict[str, int | None]:
        """Stop everything, saying what it waits for on the way (``say(text)`` without a newline)."""
        say = say or (lambda text: None)
        codes: dict[str, int | None] = {}
        # Agents first (they publish their death), then the bridge, then the worker.
        order = {"agent": 0, "bridge": 1, "worker": 2}
        stages: dict[int, list[Proc]] = {}
        for p in self.procs:
            stages.setdefault(order[p.name.split("-")[0]], []).append(p)
        for stage in sorted(stages):
            procs = stages[stage]
            t0 = time.monotonic()
            say(f"{self._stopping_what(procs[0].name.split('-')[0], len(procs))}… ")
            for p in procs:  # all of a stage at once: N agents take as long as the slowest, not N times
                p.terminate()
            for p in procs:
                codes[p.name] = p.stop()
            say(f"{time.monotonic() - t0:.1f} s; ")
        if self.labeller is not None:
            self.labeller.stop()
        for svc in (self.person, self.console):
            if svc is not None:
                svc.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.broker is not None:
            say("broker… ")
            self.broker.stop()
        say("done\n")
        return codes

    def _stopping_what(self, role: str, n: int) -> str:
        if role == "agent":
            return f"{n} agent{'s' if n > 1 else ''} (sending what they hold)"
        if role == "bridge":
            return "bridge (handing on what it holds)"
        workers = self.watcher.stats.summary()["workers"].values() if self.watcher else []
        if any(worker_short(w) == "retraining" for w in workers):
            return "worker (leaving its retrain, saving its learning buffer)"
        if any(worker_short(w) == "training_v1" for w in workers):
            return "worker (leaving v1's training)"
        return "worker (saving its learning buffer, acknowledging batches)"

    def watch_hint(self) -> str:
        port = self.broker.port if self.broker else None
        lepton = command("lepton")
        if self.secure is None:
            return (f"  watch: {lepton} monitor --port {port}\n"
                    f"     or: {mosquitto_sub(self.args.root, port)}\n"
                    f"         (the JSON topics only; `{lepton} topics` lists the binary ones)")
        f = self.secure.user_password_file
        b = self.secure.broker
        return (f"  secure: mosquitto/secure.conf, identities and PKI in {self.secure.dir}; devices on mutual TLS "
                f"port {b.mtls_port if b else '?'}\n"
                f"  watch: {lepton} monitor --port {port} --username monitor_2 --password-file {f}\n"
                f"     or: {mosquitto_sub(self.args.root, port, 'monitor_2', f)}")


def start_console(args: argparse.Namespace, access: PlainAccess | SecureAccess, run_dir: Path,
                  metrics: dict[str, int] | None = None):
    """The web console (lepton_console), in this process, on the run's broker; None with --no-console."""
    if args.no_console:
        return None
    from lepton_console.config import ConsoleConfig
    from lepton_console.service import ConsoleService

    cfg = ConsoleConfig(mqtt=MqttSettings(**access.service("console")), root=args.root, port=args.console_port,
                        registry=run_dir / "registry", outbox=run_dir / "console" / "labels.sqlite",
                        **up_metrics.settings(metrics or {}, "console"))
    svc = ConsoleService(cfg)
    try:
        svc.start()
    except OSError:  # the port is taken (another run's console): any free one will do
        svc.stop()
        svc = ConsoleService(cfg.model_copy(update={"port": 0, "metrics": cfg.metrics.model_copy(update={"port": 0})}))
        svc.start()
    if not svc.wait_ready(10):
        raise UpError("the console's web server did not start")
    return svc


def start_person(console, rate: float):
    """The scripted person of --labeller queue: labels what the console's queue shows first."""
    from lepton_console.person import QueuePerson

    if console is None:
        raise UpError("--labeller queue needs the console (drop --no-console)")
    person = QueuePerson(console.state, console.label, rate=rate)
    person.start()
    return person


def console_line(stack: Stack) -> str:
    c = stack.console
    if c is None:
        return ""
    return f"\n  console: {c.url}   log in: {c.login_url}"


def _validate(args: argparse.Namespace) -> str | None:
    args.task = args.task or ["digits"]
    for ref in args.task:
        try:
            require_live(load_task(ref))
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
    if args.duration is not None and args.duration < 0:
        return "--duration must be 0 (run until stopped) or positive"
    if args.person_rate <= 0:
        return "--person-rate must be positive"
    if args.sample_every <= 0:
        return "--sample-every must be positive"
    try:
        rollout_settings(args)
    except ValueError as exc:
        return str(exc)
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
    timeline: list[dict[str, Any]] = []
    t0 = time.time()
    started = False
    try:
        try:
            stack.start()
        except BrokerUnavailable as exc:
            print(f"lepton up: {exc}", file=sys.stderr)
            return 69
        except (PkiError, CredentialError, FileNotFoundError, RuntimeError) as exc:  # --secure's setup
            print(f"lepton up: secure broker: {exc}", file=sys.stderr)
            return 69
        started = True
        port = stack.broker.port if stack.broker else None
        print(f"lepton up: broker on 127.0.0.1:{port}{' (secure.conf)' if args.secure else ''}, "
              f"run dir {shown(stack.run_dir)}\n{stack.watch_hint()}{console_line(stack)}"
              f"{up_metrics.metrics_line(stack.metrics, stack.scrape_config)}", flush=True)
        print("\n".join(start_lines(stack.run_dir, stack.run_dir / "keys" / "signing.pub")), flush=True)
        if args.home_assistant:
            print("\n".join(home_assistant_lines(port, args.secure)), flush=True)
        deadline = time.monotonic() + args.duration if args.duration else None
        w = stack.watcher
        assert w is not None
        live = None
        if sys.stdout.isatty() and not args.no_tui:
            from rich.live import Live

            live = Live(table(w.stats, w.state), refresh_per_second=2)
            live.start()
        last_print = last_sample = 0.0
        try:
            while not stopping["flag"] and (deadline is None or time.monotonic() < deadline):
                time.sleep(0.25)
                stack.check()
                now = time.monotonic()
                if now - last_sample >= args.sample_every:
                    last_sample = now
                    timeline.append(w.stats.point())
                if live is not None:
                    live.update(table(w.stats, w.state))
                elif now - last_print >= args.print_every:
                    last_print = now
                    print(status_line(w.stats, w.state), flush=True)
        finally:
            if live is not None:
                live.stop()
    except UpError as exc:
        print(f"lepton up: {exc}", file=sys.stderr)
        rc = 1
    finally:
        summary = stack.watcher.stats.summary() if stack.watcher else {}
        if stack.watcher:
            timeline.append(stack.watcher.stats.point())
            summary["events"] = stack.watcher.stats.events()
        labeller = stack.labeller.counters.snapshot() if stack.labeller else {}
        if stack.person is not None:
            labeller = {"mode": "queue", **stack.person.counters.snapshot()}
        secure = stack.secure.describe() if stack.secure else None
        codes = stack.stop(_Progress("lepton up: stopping: ") if started else None)
        for s, h in old.items():
            signal.signal(s, h)
    summary["labeller"] = labeller
    summary["exit_codes"] = codes
    summary["run_dir"] = str(stack.run_dir)
    summary["broker"] = {"config": "mosquitto/secure.conf" if args.secure else "mosquitto/mosquitto.conf",
                         **({"secure": secure} if secure else {})}
    summary["timeline"] = {"t0": t0, "sample_every_s": args.sample_every, "points": timeline}
    if any(c not in (0, None) for c in codes.values()) and rc == 0:
        rc = 1
    print("\n".join(short_summary(summary, time.time() - t0)))
    if summary.get("scoreboard"):
        from lepton_views.scoreboard import markdown

        print("\nscoreboard (docs/TASKS.md explains each figure):\n" + markdown(summary["scoreboard"]))
    # The whole summary always goes to the run directory; --summary puts a copy where asked.
    text = json.dumps(summary, indent=2)
    summary_path = stack.run_dir / "summary.json"
    summary_path.write_text(text)
    if args.summary:
        summary_path = Path(args.summary)
        summary_path.write_text(text)
    report = None
    if args.report:
        from lepton_views.report import write_report

        report = write_report(summary, Path(args.report))
    print("\n" + "\n".join(where(stack.run_dir, summary_path, report)))
    return rc


class _Progress:
    """Prints the stop's stages on one line as they happen: a person sees what it waits for."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def __call__(self, text: str) -> None:
        print(self.prefix + text, end="", flush=True)
        self.prefix = ""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="run broker, bridge, worker, simulated agents and a labeller on this machine",
                       description=__doc__, formatter_class=HelpFormatter)
    p.add_argument("--port", type=int, default=None, help="broker port (default: a free one)")
    p.add_argument("--root", default=DEFAULT_ROOT, help="topic root")
    p.add_argument("--task", action="append", metavar="NAME|PATH",
                   help="task to run: a name (`lepton tasks list`) or a task spec file; repeat for several "
                        "(default: digits)")
    p.add_argument("--agents", type=int, default=2, help="simulated agents per task")
    p.add_argument("--fps", type=float, default=10.0, help="frames (or windows) per second per agent")
    p.add_argument("--label-fraction", type=float, default=0.3, help="fraction of samples the labeller corrects")
    p.add_argument("--label-delay", type=float, default=2.0, help="seconds before a label is published")
    p.add_argument("--labeller", choices=("random", "queue", "none"), default="random",
                   help="random: label --label-fraction of all predictions; queue: a scripted person labels the "
                        "console's queue in the order shown, --person-rate labels a second; none: nobody labels")
    p.add_argument("--person-rate", type=float, default=1.0, help="labels a second of --labeller queue")
    p.add_argument("--home-assistant", action="store_true",
                   help="agents announce themselves to Home Assistant (MQTT discovery); prints how to connect it")
    p.add_argument("--no-console", action="store_true", help="do not start the web console")
    p.add_argument("--console-port", type=int, default=8765, help="the web console's port on 127.0.0.1 (0: a free one)")
    p.add_argument("--no-metrics", action="store_true", help="serve no /metrics (by default the bridge, the worker "
                                                             "and the console do, on free ports; docs/INTEGRATIONS.md)")
    p.add_argument("--retrain-labels", type=int, default=100, help="new labels that trigger a retrain")
    p.add_argument("--duration", type=float, default=None,
                   help="stop after this many seconds; 0 or unset runs until Ctrl-C or SIGTERM")
    p.add_argument("--secure", action="store_true",
                   help="run on mosquitto/secure.conf: a CA made on the fly, an identity per service and device, "
                        "TLS and the dynamic-security ACLs, on free ports")
    p.add_argument("--summary", default=None, help="also write the final summary (with its time series) as JSON "
                                                   "here; it is always written to the run directory's summary.json")
    p.add_argument("--report", default=None, metavar="FILE.html",
                   help="write a self-contained HTML report with plots here (see also `lepton report`)")
    p.add_argument("--sample-every", type=float, default=2.0, help="seconds between samples of the time series")
    p.add_argument("--workdir", default=None, help="run directory (configs, logs, registry); default var/up/<time>")
    add_rollout_args(p)
    p.add_argument("--no-tui", action="store_true", help="print a status line instead of the live table")
    p.add_argument("--print-every", type=float, default=10.0, help="seconds between status lines without the TUI")
    p.set_defaults(func=run)
