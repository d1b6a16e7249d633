"""The console's /metrics (docs/INTEGRATIONS.md), read at scrape time from its counters, label outbox and
queue."""

from __future__ import annotations

from typing import Any

from shared.process.metrics import MetricsEndpoint, counter, gauge


class ConsoleCollector:
    def __init__(self, service: Any) -> None:
        self.s = service

    def collect(self) -> Any:
        s = self.s
        snap = s.counters.snapshot()
        fam = counter("lepton_console_labels_given", "Labels people gave in the console (sent once each; "
                      "resends not counted).")
        fam.add_metric([], snap.get("labels.sent", 0))
        yield fam
        fam = gauge("lepton_console_labels_awaiting_custody", "Label messages sent but not yet in the bridge's "
                    "custody (kept and resent until they are).")
        fam.add_metric([], len(s.sender.outbox))
        yield fam
        fam = gauge("lepton_console_queue_length", "Samples waiting in the label queue.")
        fam.add_metric([], len(s.state.items))
        yield fam
        fam = counter("lepton_console_queue_dropped", "Unlabelled samples dropped from a full queue (oldest).")
        fam.add_metric([], s.state.counters.get("queue.dropped_oldest"))
        yield fam


def console_endpoint(service: Any) -> MetricsEndpoint:
    return MetricsEndpoint(service.cfg.metrics, [ConsoleCollector(service)])
