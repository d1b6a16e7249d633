"""The bridge's /metrics (docs/INTEGRATIONS.md): read from its counters, scheduler and ledgers at scrape
time; only the dispatch latency is recorded as it happens (a histogram)."""

from __future__ import annotations

from typing import Any

from hub_bridge.classes import CLASS_NAMES
from shared.process.metrics import MetricsEndpoint, by_suffix, counter, gauge

# How a message left the queue without being delivered: the scheduler's discard reasons.
SHED_REASONS = {"dropped": "overflow", "expired": "expired", "duplicate": "duplicate"}


class BridgeCollector:
    def __init__(self, bridge: Any) -> None:
        self.b = bridge

    def collect(self) -> Any:
        b = self.b
        snap = b.counters.snapshot()
        msgs_in = counter("lepton_bridge_messages_in", "Device messages queued by the bridge.", ["class"])
        out = counter("lepton_bridge_messages_delivered", "Messages the bridge delivered onward (escalations "
                      "to a worker, labels and features into fusion, events and telemetry consumed).", ["class"])
        shed = counter("lepton_bridge_messages_shed", "Messages not delivered: queue overflow, TTL expiry, "
                       "or a duplicate of one already in custody.", ["class", "reason"])
        rejected = counter("lepton_bridge_messages_rejected", "Malformed or oversized messages refused.",
                           ["class", "reason"])
        depth = gauge("lepton_bridge_queue_depth", "Messages waiting in the bridge's queue.", ["class"])
        age = gauge("lepton_bridge_queue_oldest_age_seconds", "Age of the oldest waiting message.", ["class"])
        put = list(b.sched.put_count)
        with b._delivered_lock:
            delivered = list(b.delivered)
        for c, name in enumerate(CLASS_NAMES):
            msgs_in.add_metric([name], put[c])
            out.add_metric([name], delivered[c])
            for what, reason in SHED_REASONS.items():
                shed.add_metric([name, reason], snap.get(f"{what}.{name}", 0))
            for reason, n in sorted(by_suffix(snap, f"rejected.{name}.").items()):
                rejected.add_metric([name, reason], n)
        for c, (d, a) in enumerate(zip(b.sched.depths(), b.sched.oldest_age(), strict=True)):
            depth.add_metric([CLASS_NAMES[c]], d)
            age.add_metric([CLASS_NAMES[c]], a)
        yield from (msgs_in, out, shed, rejected, depth, age)
        led = b.ledger.gauges()
        lag = gauge("lepton_bridge_custody_lag_seconds", "Age of the oldest fused batch no worker has "
                    "acknowledged yet (0 when none waits): how far custody trails delivery.")
        lag.add_metric([], b.handoff.oldest_age(b.clock()))
        yield lag
        g = gauge("lepton_bridge_custody_unacked_batches", "Fused batches waiting for a worker's acknowledgement.")
        g.add_metric([], len(b.handoff))
        yield g
        g = gauge("lepton_bridge_custody_in_process", "Device messages admitted and not yet in custody.")
        g.add_metric([], led.get("custody.in_process", 0.0))
        yield g
        fin = counter("lepton_bridge_custody_finished", "Device messages whose fate is final (in custody).")
        fin.add_metric([], b.ledger.finished)
        yield fin
        online = gauge("lepton_bridge_devices_online", "Devices whose retained status says online.")
        online.add_metric([], len(b.devices_online))
        yield online
        yield from self._devices()

    def _devices(self) -> Any:
        board = self.b.devices
        fams = {k: gauge(f"lepton_device_{k}", doc, ["device"]) for k, doc in (
            ("fps", "Frames the device processed per second (its last telemetry)."),
            ("escalation_ratio", "Escalated samples / samples since the device booted."),
            ("outbox_depth", "Messages waiting in the device's store-and-forward outbox."),
            ("online", "1 while the device's retained status says online."))}
        version = gauge("lepton_device_model_version", "Model version the device serves, per task.",
                        ["device", "task"])
        for dev, e in sorted(board.snapshot().items()):
            fams["fps"].add_metric([dev], e.fps)
            fams["escalation_ratio"].add_metric([dev], e.escalation_ratio)
            fams["outbox_depth"].add_metric([dev], e.outbox_depth)
            fams["online"].add_metric([dev], 1.0 if e.online else 0.0)
            for task, v in sorted(e.models.items()):
                version.add_metric([dev, task], v)
        yield from fams.values()
        yield version
        left = counter("lepton_bridge_device_series_left_out", "Devices given no per-device series because "
                       "metrics.max_devices were already shown.")
        left.add_metric([], board.left_out)
        yield left


def bridge_endpoint(bridge: Any) -> tuple[MetricsEndpoint, Any]:
    """The endpoint and its dispatch-latency histogram (labelled by class)."""
    ep = MetricsEndpoint(bridge.cfg.metrics, [BridgeCollector(bridge)])
    hist = ep.histogram("lepton_bridge_dispatch_latency_seconds", "Seconds from a message's arrival at the bridge "
                        "to its delivery onward.", ("class",))
    return ep, hist
