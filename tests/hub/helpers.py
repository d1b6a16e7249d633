"""Builders for device payloads, a bridge runner and an output collector for the hub tests."""

from __future__ import annotations

import re
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from hub_bridge.bridge import HubBridge
from hub_bridge.classes import CLASS_NAMES, TELEMETRY
from hub_bridge.config import BridgeConfig
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch, HardSample
from shared.protocol.topics import Topics
from shared.transport.mqtt import Message, MqttClient, MqttSettings

BOOT = 1_700_000_000
# An agent numbers all its QoS 1 messages in one sequence per boot (the custody and dedup key is
# (device, boot, seq)). These helpers give each class its own boot by default, so that a test can
# number events, escalations and features from 0 each without their keys colliding.
HARD_BOOT, FEAT_BOOT = BOOT + 1, BOOT + 2


def wait_until(pred: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            return v
        time.sleep(interval)


def event(dev: str, seq: int, boot: int = BOOT, stream: str = "front") -> bytes:
    return schemas.dumps(schemas.Event(device=dev, stream=stream, task="digits", sample=seq, label=1, name="one",
                                       confidence=0.99, boot=boot, seq=seq, ts=time.time()))


def hard(dev: str, seq: int, boot: int = HARD_BOOT, stream: str = "front", task: str = "digits") -> bytes:
    rng = np.random.default_rng(seq)
    return HardSample(dev, stream, task, boot, seq, 1, np.array([seq], np.int64),
                      rng.random((1, 1, 8, 8), dtype=np.float32), rng.random((1, 16), dtype=np.float32),
                      rng.random((1, 10), dtype=np.float32), np.array([time.time()])).encode()


def feat(dev: str, seq: int, samples, boot: int = FEAT_BOOT, stream: str = "front", dim: int = 16,
         task: str = "digits") -> bytes:
    n = len(samples)
    rng = np.random.default_rng(seq)
    return FeatureBatch(dev, stream, task, boot, seq, 1, np.asarray(samples, np.int64),
                        rng.random((n, dim), dtype=np.float32), rng.random((n, 10), dtype=np.float32),
                        np.full(n, time.time())).encode()


def labels(dev: str, pairs, stream: str = "front", task: str = "digits") -> bytes:
    return schemas.dumps(schemas.Labels(device=dev, stream=stream, task=task,
                                        items=[schemas.LabelItem(sample=s, label=y) for s, y in pairs], ts=time.time()))


def telemetry(dev: str) -> bytes:
    return schemas.dumps(schemas.Telemetry(device=dev, boot=BOOT, ts=time.time(), fps=10, latency_ms_p50=1,
                                           latency_ms_p99=2, uplink_bytes=0, raw_bytes=0, outbox_depth=0,
                                           escalation_ratio=0.1, frames=1, dropped_frames=0))


def status(dev: str, state: str = "online") -> bytes:
    return schemas.dumps(schemas.Status(device=dev, state=state, boot=BOOT, ts=time.time()))


def bridge_config(broker, topics: Topics, **kw: Any) -> BridgeConfig:
    base: dict[str, Any] = dict(root=topics.root, id=f"b{uuid.uuid4().hex[:8]}",
                                mqtt=MqttSettings(host=getattr(broker, "host", "127.0.0.1"), port=broker.port),
                                status_interval=0.3,
                                fusion=dict(batch_size=64, batch_age=0.2, label_wait=0.3, window=30.0))
    for k, v in kw.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            base[k] = {**base[k], **v}
        else:
            base[k] = v
    return BridgeConfig.model_validate(base)


def start_bridge(cfg: BridgeConfig, pub: MqttClient, topics: Topics) -> HubBridge:
    """Start a bridge and prove both of its connections are subscribed (a status and a telemetry probe)."""
    b = HubBridge(cfg).start()
    assert b.wait_connected(10), "bridge did not connect"
    probe = f"probe-{uuid.uuid4().hex[:6]}"
    for _ in range(20):
        pub.publish(topics.status(probe), status(probe), qos=1)
        pub.publish(topics.telemetry(probe), telemetry(probe), qos=1)
        if wait_until(lambda: probe in b.devices_online and b.delivered[TELEMETRY] > 0, timeout=0.5):
            break
    else:
        raise AssertionError("bridge subscriptions never became active")
    # A probe repeated before the subscription was active may still be in flight: let it land.
    wait_until(lambda: len(b.sched) == 0 and False, timeout=0.3)
    return b


def class_counts(b: HubBridge) -> dict[str, dict[str, int]]:
    c, _ = b.snapshot()
    return {n: {k: c.get(f"{k}.{n}", 0) for k in ("in", "delivered", "dropped", "expired", "duplicate")}
            for n in CLASS_NAMES}


class Collector:
    """Subscribes to filters and keeps every message (thread-safe)."""

    def __init__(self, client: MqttClient) -> None:
        self.client = client
        self.msgs: list[Message] = []
        self._lock = threading.Lock()

    def add(self, flt) -> Collector:
        codes = self.client.subscribe_and_wait(flt, qos=1, handler=self._on)
        assert all(c < 0x80 for c in codes)
        return self

    def _on(self, m: Message) -> None:
        with self._lock:
            self.msgs.append(m)

    def matching(self, pred: Callable[[Message], bool] = lambda m: True) -> list[Message]:
        with self._lock:
            return [m for m in self.msgs if pred(m)]


# Labels of low cardinality only (docs/INTEGRATIONS.md): never a sample id or a sequence number.
METRIC_LABELS = {"class", "reason", "task", "kind", "trigger", "outcome", "queue", "le"}


def documented_metrics() -> dict[str, str]:
    """{family name: type} from docs/INTEGRATIONS.md's tables (counters without their _total, as parsed)."""
    doc = (Path(__file__).resolve().parents[2] / "docs" / "INTEGRATIONS.md").read_text()
    rows = re.findall(r"^\| `(lepton_[a-z_]+)` \| (counter|gauge|histogram) \|", doc, re.M)
    return {(n.removesuffix("_total") if k == "counter" else n): k for n, k in rows}


def check_conventions(text: str, documented: bool = True) -> None:
    """Lepton's naming rules over one scrape: lepton_ prefix, _total counters, seconds for times, low-cardinality
    labels (device only on the per-device lepton_device_* gauges); each family in docs/INTEGRATIONS.md."""
    doc = documented_metrics() if documented else {}
    for fam in text_string_to_metric_families(text):
        assert fam.name.startswith("lepton_"), fam.name
        if documented:
            assert doc.get(fam.name) == fam.type, f"{fam.name} ({fam.type}) is not in docs/INTEGRATIONS.md as such"
        assert not any(u in fam.name for u in ("_ms", "millis", "_kb", "_mb")), fam.name
        for s in fam.samples:
            if fam.type == "counter":
                assert s.name.endswith("_total"), s.name
            allowed = METRIC_LABELS | ({"device"} if fam.name.startswith("lepton_device_") else set())
            assert set(s.labels) <= allowed, (s.name, s.labels)
        if fam.type == "histogram":
            assert fam.name.endswith("_seconds"), fam.name


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """One scrape of a /metrics endpoint, parsed by prometheus-client and checked against Lepton's naming rules:
    {sample: {sorted labels: value}}."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    check_conventions(text)
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out
