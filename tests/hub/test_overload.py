"""Under overload alerts and escalations get through in time while features and telemetry are shed,
and every message sent is accounted for exactly: sent = delivered + dropped + expired, per class."""

from __future__ import annotations

import threading
import time

import pytest

from hub_bridge.classes import CLASS_NAMES
from shared.protocol.containers import HardSample

from .helpers import (
    Collector,
    bridge_config,
    class_counts,
    event,
    feat,
    hard,
    start_bridge,
    telemetry,
    wait_until,
)

pytestmark = pytest.mark.broker

N_FEAT, N_TEL, N_ALERT = 3000, 1500, 60


def test_overload_sheds_low_classes_and_accounts_for_every_message(broker, topics, mqtt_factory, bridges):
    # Prepare
    flood, alerts, worker = mqtt_factory(max_queued=0), mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics,
                        classes=dict(event=dict(capacity=1000, ttl=5), escalation=dict(capacity=1000, ttl=5),
                                     feature=dict(capacity=20, ttl=5, share=0.05),
                                     telemetry=dict(capacity=20, ttl=5, share=0.02)),
                        fusion=dict(batch_size=512, label_wait=0.0, batch_age=0.2))
    b = start_bridge(cfg, flood, topics)
    bridges.append(b)
    base = class_counts(b)
    infer = Collector(worker).add(topics.hub_infers())
    feats = [feat(f"dev-{i % 50}", i, range(i * 64, i * 64 + 64), dim=128) for i in range(N_FEAT)]
    tel = [telemetry(f"dev-{i}") for i in range(50)]

    def send_alerts() -> None:
        for i in range(N_ALERT):
            alerts.publish(topics.event("cam-1", "front"), event("cam-1", i), qos=1)
            alerts.publish(topics.hard("cam-1", "front"), hard("cam-1", i), qos=1)
            time.sleep(0.01)

    # Execute
    th = threading.Thread(target=send_alerts)
    th.start()
    for i in range(max(N_FEAT, N_TEL)):
        if i < N_FEAT:
            flood.publish(topics.feat(f"dev-{i % 50}", "front"), feats[i], qos=1)
        if i < N_TEL:
            flood.publish(topics.telemetry(f"dev-{i % 50}"), tel[i % 50], qos=1)
    th.join()
    sent = {"event": N_ALERT, "escalation": N_ALERT, "label": 0, "feature": N_FEAT, "telemetry": N_TEL}

    def settled():
        c = class_counts(b)
        for n in CLASS_NAMES:
            d = {k: c[n][k] - base[n][k] for k in c[n]}
            if d["delivered"] + d["dropped"] + d["expired"] != sent[n]:
                return None
        return c

    counts = wait_until(settled, timeout=60, interval=0.1)
    got = wait_until(lambda: len(infer.matching()) >= N_ALERT, 10)
    _, gauges = b.snapshot()

    # Assert
    assert counts, (class_counts(b), base)
    assert not [k for k in b.counters.snapshot() if k.startswith("rejected.")]
    delta = {n: {k: counts[n][k] - base[n][k] for k in counts[n]} for n in CLASS_NAMES}
    for n in CLASS_NAMES:
        assert delta[n]["in"] == sent[n]
        assert delta[n]["delivered"] + delta[n]["dropped"] + delta[n]["expired"] == sent[n]
    assert delta["event"]["delivered"] == N_ALERT
    assert delta["escalation"]["delivered"] == N_ALERT
    assert got and sorted(HardSample.decode(m.payload).seq for m in infer.matching()) == list(range(N_ALERT))
    assert delta["feature"]["dropped"] + delta["feature"]["expired"] > 0, "no feature was shed: not an overload"
    assert delta["feature"]["delivered"] > 0, "the guaranteed share must still serve some features"
    assert gauges["latency_ms_p99.event"] < 5000 and gauges["latency_ms_p99.escalation"] < 5000
    per_dev = sum(v for k, v in b.dev_counters.snapshot().items()
                  if k.startswith(("dropped.feature.", "expired.feature.")))
    assert per_dev == delta["feature"]["dropped"] + delta["feature"]["expired"]
