"""`lepton monitor`: subscribe to the tree and show the fleet, decoding binary topics.

    lepton monitor                      # live table (rich), Ctrl-C to quit
    lepton monitor --raw                # one decoded line per message, like mosquitto_sub -v
    lepton monitor --duration 10 --json # collect for 10 s, print the summary as JSON
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from typing import Any

from lepton_cli.fleetview import FleetStats
from shared.containers import FeatureBatch, FusedBatch, HardSample
from shared.counters import Counters
from shared.mqtt import Message, MqttClient, MqttSettings
from shared.topics import DEFAULT_ROOT, Topics
from shared.wire import Decoded, Receiver


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
        return f"artifact {len(v)} bytes"
    return v.model_dump_json(by_alias=True)


def table(stats: FleetStats) -> Any:
    from rich.table import Table

    s = stats.summary()
    t = Table(title=f"Lepton fleet — {time.strftime('%H:%M:%S')}")
    for col in ("device", "task", "state", "model", "preds", "acc (rolling)", "escalated", "uplink/raw", "outbox",
                "fps"):
        t.add_column(col)
    for r in stats.rows():
        acc = f"{sum(r.recent) / len(r.recent):.3f}" if r.recent else "-"
        esc = f"{r.escalated / r.preds:.1%}" if r.preds else "-"
        ratio = f"{r.uplink / r.raw:.1%}" if r.raw else "-"
        t.add_row(r.device, r.task, r.state, f"v{r.model}", str(r.preds), acc, esc, ratio, str(r.outbox), f"{r.fps:.1f}")
    models = ", ".join(f"{k}: v{m['version']} ({', '.join(f'{a}={b:.3f}' for a, b in m['metrics'].items())})"
                       for k, m in s["models"].items()) or "none yet"
    hub = s["hub"]
    if hub:
        g = hub["gauges"]
        depths = " ".join(f"{k.split('.', 1)[1]}={int(v)}" for k, v in sorted(g.items()) if k.startswith("queue."))
        drops = sum(v for k, v in hub["counters"].items() if k.startswith(("dropped", "expired")))
        hub_line = f"hub queues: {depths or '-'}; dropped+expired: {drops}"
    else:
        hub_line = "hub: no status yet"
    t.caption = f"models: {models}\n{hub_line}\njoint acc {s['accuracy_joint']} · edge-only acc {s['accuracy_edge_only']}"
    return t


class Watcher:
    """Subscribes to the whole tree and feeds FleetStats (and optionally a line printer)."""

    def __init__(self, mqtt: MqttSettings, topics: Topics, raw: bool = False) -> None:
        self.topics = topics
        self.stats = FleetStats()
        self.counters = Counters()
        self.raw = raw
        self._print_lock = threading.Lock()
        self.client = MqttClient(mqtt, client_id=f"lepton-monitor-{uuid.uuid4().hex[:6]}", counters=self.counters)
        self.client.subscribe(topics.all(), 1, Receiver(topics, self._on, self.counters))

    def _on(self, d: Decoded, m: Message) -> None:
        self.stats.feed(d, len(m.payload))
        if self.raw:
            with self._print_lock:
                print(f"{m.topic} {describe(d)}", flush=True)

    def start(self) -> Watcher:
        self.client.start()
        return self

    def stop(self) -> None:
        self.client.stop()


def run(args: argparse.Namespace) -> int:
    topics = Topics(args.root)
    w = Watcher(MqttSettings(host=args.host, port=args.port, username=args.username, password=args.password),
                topics, raw=args.raw).start()
    if not w.client.wait_connected(args.connect_timeout):
        print(f"lepton monitor: cannot reach the broker at {args.host}:{args.port} "
              f"({w.client.last_connect_error or 'no answer'}); is `lepton up` or mosquitto running?", file=sys.stderr)
        w.stop()
        return 69
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        if args.raw or args.json or not sys.stdout.isatty():
            while deadline is None or time.monotonic() < deadline:
                time.sleep(0.2)
        else:
            from rich.live import Live

            with Live(table(w.stats), refresh_per_second=2) as live:
                while deadline is None or time.monotonic() < deadline:
                    time.sleep(0.5)
                    live.update(table(w.stats))
    except KeyboardInterrupt:
        pass
    finally:
        w.stop()
    if args.json:
        print(json.dumps(w.stats.summary(), indent=2))
    return 0


def add_broker_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--host", default="127.0.0.1", help="broker host (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default 1883)")
    p.add_argument("--username", default=None, help="broker username (secure listener)")
    p.add_argument("--password", default=None, help="broker password")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"topic root (default {DEFAULT_ROOT})")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("monitor", help="watch the fleet: status, accuracy, escalations, queues")
    add_broker_args(p)
    p.add_argument("--raw", action="store_true", help="print every message decoded, one per line")
    p.add_argument("--json", action="store_true", help="print the collected summary as JSON at the end")
    p.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    p.add_argument("--connect-timeout", type=float, default=5.0, help="seconds to wait for the broker")
    p.set_defaults(func=run)
