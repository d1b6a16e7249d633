"""A service's ``/metrics`` endpoint in the Prometheus text format (docs/INTEGRATIONS.md).

Each service serves its own registry on its own port, so one process can hold several services
(tests, ``lepton up``) without their series mixing. The services' figures are read at scrape
time by a collector from what they already keep (Counters, queues, status); only latency
histograms are recorded as they happen, since recent-sample windows cannot be made cumulative.

prometheus-client is imported only when an endpoint starts: a device without it runs, and a
role whose metrics are off never loads it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

log = logging.getLogger(__name__)

# Seconds: from a millisecond hand-off on one host to a retrain-sized stall.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(False, description="Serve /metrics in the Prometheus text format (off by default; "
                                             "`lepton up` and docker compose turn it on).")
    host: str = Field("127.0.0.1", description="Address the metrics endpoint binds; anything but loopback exposes "
                                               "it (no authentication: put it on a monitoring network only).")
    port: int = Field(9850, ge=0, le=65535, description="Port of the metrics endpoint; 0 picks a free one.")


def with_port(port: int) -> Callable[[], MetricsSettings]:
    """A default_factory: the same settings with this role's own default port."""
    return lambda: MetricsSettings(port=port)


class MetricsEndpoint:
    """An HTTP server for one registry. ``start()`` binds (OSError when the port is taken); ``stop()`` closes."""

    def __init__(self, settings: MetricsSettings, collectors: Iterable[Any] = ()) -> None:
        from prometheus_client import CollectorRegistry, disable_created_metrics

        # No <histogram>_created series: the text format shows them as gauges of their own, one more
        # series per histogram for a start time Prometheus does not use.
        disable_created_metrics()
        self.settings = settings
        self.registry = CollectorRegistry(auto_describe=False)
        for c in collectors:
            self.registry.register(c)
        self.port: int | None = None
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def histogram(self, name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
        from prometheus_client import Histogram

        return Histogram(name, doc, labels, registry=self.registry, buckets=LATENCY_BUCKETS)

    def start(self) -> MetricsEndpoint:
        from prometheus_client import start_http_server

        try:
            self._server, self._thread = start_http_server(self.settings.port, self.settings.host, self.registry)
        except OSError as exc:  # the port is taken, the address is not this host's
            raise OSError(exc.errno, f"metrics endpoint {self.settings.host}:{self.settings.port}: "
                                     f"{exc.strerror or exc} (set metrics.port, or metrics.enabled = false)") from None
        self.port = self._server.server_port
        log.info("metrics on http://%s:%d/metrics", self.settings.host, self.port)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)


def counter(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
    """A counter family (prometheus-client adds the ``_total``)."""
    from prometheus_client.core import CounterMetricFamily

    return CounterMetricFamily(name, doc, labels=list(labels))


def gauge(name: str, doc: str, labels: Iterable[str] = ()) -> Any:
    from prometheus_client.core import GaugeMetricFamily

    return GaugeMetricFamily(name, doc, labels=list(labels))


def by_suffix(snapshot: dict[str, int], prefix: str) -> dict[str, int]:
    """Counters ``<prefix><rest>`` as {rest: value}: ``infer.rejected.bad_shape`` -> {"bad_shape": n}."""
    return {k[len(prefix):]: v for k, v in snapshot.items() if k.startswith(prefix) and len(k) > len(prefix)}
