"""`lepton monitor`: subscribe to the tree and show the fleet, decoding binary topics.

    lepton monitor                      # live table on a terminal (rich), Ctrl-C to quit
    lepton monitor > fleet.log          # off a terminal: one plain status line every --print-every s
    lepton monitor --raw | head         # one decoded line per message; a closed pipe ends it quietly
    lepton monitor --duration 10 --json # collect for 10 s, print the summary as JSON

When the broker goes away the table and the status lines say "DISCONNECTED" (the client keeps
retrying); with --raw, connection changes go to stderr so stdout stays one message per line.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any, TextIO

from lepton_cli.fleettable import FleetView, worker_short
from lepton_views.fleetview import FleetStats
from shared.process.cli_help import HelpFormatter
from shared.process.closed_pipe import silence_stdout
from shared.process.counters import Counters
from shared.protocol.containers import FeatureBatch, FusedBatch, HardSample
from shared.protocol.topics import DEFAULT_ROOT, Kind, Topics
from shared.protocol.wire import Decoded, Receiver
from shared.transport.mqtt import Message, MqttClient, MqttSettings, TlsSettings


def describe(d: Decoded) -> str:
    """One readable line for any decoded value (binary containers summarised)."""
    v = d.value
    if isinstance(v, FeatureBatch):
        return (f"feat device={v.device} task={v.task} rows={len(v.sample)} dim={v.feat.shape[1]} "
                f"dtype={v.feat.dtype} seq={v.seq} model=v{v.model_version}")
    if isinstance(v, HardSample):
        return f"hard device={v.device} task={v.task} samples={v.sample.tolist()} x={tuple(v.x.shape)} seq={v.seq}"
    if isinstance(v, FusedBatch):
        labelled = int((v.label >= 0).sum())
        return f"fused task={v.task} rows={len(v.sample)} labelled={labelled} devices={len(v.devices)} seq={v.seq}"
    if isinstance(v, bytes):
        return f"snapshot {len(v)} bytes (JPEG)" if d.topic.kind is Kind.SNAPSHOT else f"artifact {len(v)} bytes"
    return v.model_dump_json(by_alias=True)


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def _hub_totals(hub: dict[str, Any] | None) -> tuple[int, int]:
    """(messages queued in the hub now, dropped + expired so far)."""
    if not hub:
        return 0, 0
    queued = int(sum(v for k, v in hub["gauges"].items() if k.startswith("queue.")))
    drops = sum(v for k, v in hub["counters"].items() if k.startswith(("dropped.", "expired.")))
    return queued, drops


def connection_text(state: ConnectionState | None) -> str:
    if state is None or state.connected:
        return "connected"
    since = time.strftime("%H:%M:%S", time.localtime(state.since)) if state.since else "start"
    return f"DISCONNECTED since {since} (retrying)"


def status_line(stats: FleetStats, state: ConnectionState | None = None) -> str:
    """The plain, greppable one-line view (what `lepton up` and `lepton monitor` print off a terminal)."""
    s = stats.summary()
    queued, drops = _hub_totals(s["hub"])
    models = ",".join(f"{t}:v{m['version']}" for t, m in s["models"].items()) or "-"
    workers = ",".join(worker_short(w) for w in s["workers"].values()) or "starting"
    return (f"[{time.strftime('%H:%M:%S')}] broker={connection_text(state).replace(' ', '_')} "
            f"devices={len(s['devices'])} models={models} worker={workers} preds={s['predictions']} "
            f"edge_acc={_fmt(s['accuracy_edge_only'])} joint_acc={_fmt(s['accuracy_joint'])} "
            f"cloud_acc={_fmt(s['accuracy_cloud'])} escalated={_fmt(s['escalation_ratio'], True)} "
            f"uplink/raw={_fmt(s['uplink_vs_raw'], True)} capture_errors={s['capture_errors']} "
            f"reconnects={s['capture_reconnects']} hub_queued={queued} hub_dropped={drops} "
            f"gate_refusals={s['gate_refusals']} agent_rejections={s['agent_model_rejections']}"
            + (f" rollout={token}" if (token := stats.rollout_text()[1]) != "-" else ""))


def table(stats: FleetStats, state: ConnectionState | None = None) -> Any:
    """The live view: a table fitted to the terminal's width, and a few short lines (lepton_cli/fleettable.py)."""
    return FleetView(stats, state, connection_text)


class ConnectionState:
    """Whether the watcher's client is connected, and since when it is not."""

    def __init__(self) -> None:
        self.connected = False
        self.since: float | None = None  # when it was lost (None: never connected yet)
        self.changes = 0


class Output:
    """stdout for a filter: a closed pipe (``| head``) is remembered, not raised on every line."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream
        self.closed = threading.Event()
        self._lock = threading.Lock()

    def write_line(self, line: str) -> bool:
        if self.closed.is_set():
            return False
        with self._lock:
            stream = self.stream or sys.stdout
            try:
                stream.write(line + "\n")
                stream.flush()
            except (BrokenPipeError, ValueError):
                self.closed.set()
                # Whatever Python flushes at exit goes nowhere instead of raising again.
                silence_stdout()
                return False
        return True


class Watcher:
    """Subscribes to the whole tree and feeds FleetStats (and optionally a line printer)."""

    def __init__(self, mqtt: MqttSettings, topics: Topics, raw: bool = False, out: Output | None = None,
                 client_id: str | None = None) -> None:
        self.topics = topics
        self.stats = FleetStats()
        self.counters = Counters()
        self.raw = raw
        self.out = out or Output()
        self.state = ConnectionState()
        self.client = MqttClient(mqtt, client_id=client_id or f"lepton-monitor-{uuid.uuid4().hex[:6]}",
                                 counters=self.counters)
        self.client.subscribe(topics.all(), 1, Receiver(topics, self._on, self.counters))
        self.client.on_connect_hooks.append(self._connected)
        self.client.on_disconnect_hooks.append(self._disconnected)

    def _connected(self, session_present: bool) -> None:
        self.state.connected, self.state.since = True, None
        self.state.changes += 1

    def _disconnected(self) -> None:
        if self.state.connected or self.state.since is None:
            self.state.since = time.time()
        self.state.connected = False
        self.state.changes += 1

    def _on(self, d: Decoded, m: Message) -> None:
        self.stats.feed(d, len(m.payload))
        if self.raw:
            self.out.write_line(f"{m.topic} {describe(d)}")

    def start(self) -> Watcher:
        self.client.start()
        return self

    def stop(self) -> None:
        self.client.stop()


def run(args: argparse.Namespace) -> int:
    topics = Topics(args.root)
    password = args.password
    if args.password_file:
        password = open(args.password_file).readline().strip()
    tls = TlsSettings(ca=args.cafile) if args.cafile else None
    out = Output()
    w = Watcher(MqttSettings(host=args.host, port=args.port, username=args.username, password=password, tls=tls),
                topics, raw=args.raw, out=out).start()
    if not w.client.wait_connected(args.connect_timeout):
        print(f"lepton monitor: cannot reach the broker at {args.host}:{args.port} "
              f"({w.client.last_connect_error or 'no answer'}); is `lepton up` or mosquitto running?", file=sys.stderr)
        w.stop()
        return 69
    deadline = time.monotonic() + args.duration if args.duration else None

    def running() -> bool:
        return not out.closed.is_set() and (deadline is None or time.monotonic() < deadline)

    try:
        if args.raw or args.json:
            seen = w.state.changes
            while running():
                time.sleep(0.2)
                if w.state.changes != seen:  # stderr: stdout stays one message per line
                    seen = w.state.changes
                    print(f"lepton monitor: broker {connection_text(w.state)}", file=sys.stderr, flush=True)
        elif sys.stdout.isatty() and not args.plain:
            from rich.live import Live

            with Live(table(w.stats, w.state), refresh_per_second=2) as live:
                while running():
                    time.sleep(0.5)
                    live.update(table(w.stats, w.state))
        else:
            last, seen = 0.0, w.state.changes
            while running():
                time.sleep(0.2)
                changed = w.state.changes != seen
                if changed or time.monotonic() - last >= args.print_every:
                    seen, last = w.state.changes, time.monotonic()
                    out.write_line(status_line(w.stats, w.state))
    except KeyboardInterrupt:
        pass
    finally:
        w.stop()
    if args.json:
        out.write_line(json.dumps(w.stats.summary(), indent=2))
    return 0


def add_broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="broker host")
    p.add_argument("--port", type=int, default=1883, help="broker port")
    p.add_argument("--username", default=None, help="broker username (secure listener)")
    p.add_argument("--password", default=None, help="broker password")
    p.add_argument("--password-file", default=None, help="read the password from the first line of this file")
    p.add_argument("--cafile", default=None, help="CA certificate: connect with TLS and check the broker against it")
    p.add_argument("--root", default=DEFAULT_ROOT, help="topic root")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="watch the fleet: status, accuracy, escalations, queues",
                       description=__doc__, formatter_class=HelpFormatter)
    add_broker_args(p)
    p.add_argument("--raw", action="store_true", help="print every message decoded, one per line")
    p.add_argument("--json", action="store_true", help="print the collected summary as JSON at the end")
    p.add_argument("--plain", action="store_true", help="status lines instead of the live table, even on a terminal")
    p.add_argument("--print-every", type=float, default=5.0, help="seconds between status lines off a terminal")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to wait for the broker")
    p.set_defaults(func=run)
