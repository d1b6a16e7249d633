"""What the Fleet page adds to :class:`lepton_views.fleetview.FleetStats`: since when a device is in its
state, its last error, custody lag, and its recent predictions and events (for the device page)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

from lepton_views.fleetview import CAPTURE_ERROR_COUNTERS, FleetStats
from shared.protocol import schemas
from shared.protocol.topics import Kind
from shared.protocol.wire import Decoded

RECENT = 50


@dataclass
class Extra:
    since: float = 0.0  # unix time the device entered its current state
    last_error: str = ""
    last_error_ts: float = 0.0
    custody_at: float = 0.0  # unix time its custody count last grew (from its telemetry)
    custody_n: int = 0
    telemetry_at: float = 0.0
    escalation_ratio: float = 0.0
    preds: deque = field(default_factory=lambda: deque(maxlen=RECENT))
    events: deque = field(default_factory=lambda: deque(maxlen=RECENT))


class FleetExtras:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.devices: dict[str, Extra] = defaultdict(Extra)

    def feed(self, d: Decoded) -> None:
        k, v, dev = d.topic.kind, d.value, d.topic.device
        if dev is None or k not in (Kind.STATUS, Kind.TELEMETRY, Kind.MODEL_STATE, Kind.PRED, Kind.EVENT):
            return
        with self._lock:
            e = self.devices[dev]
            if k is Kind.STATUS:
                # A will (offline) carries the time its device connected: the change is when it arrives.
                e.since = time.time() if e.since and v.state == "offline" else v.ts
                e.events.append((v.ts, f"{v.state} (boot {v.boot})"))
            elif k is Kind.TELEMETRY:
                self._telemetry(e, v)
            elif k is Kind.MODEL_STATE:
                what = f"model v{v.version} {v.state}" + (f" (offered v{v.offered})" if v.offered else "")
                e.events.append((v.ts, what + (f": {v.reason}" if v.reason else "")))
                if v.state in ("rejected", "rolled_back") and v.reason:
                    e.last_error, e.last_error_ts = v.reason, v.ts
            elif k is Kind.PRED:
                e.preds.append(v)
            elif k is Kind.EVENT:
                e.events.append((v.ts, f"alert {v.name} ({v.confidence:.2f}) on sample {v.sample}"))

    @staticmethod
    def _telemetry(e: Extra, t: schemas.Telemetry) -> None:
        e.telemetry_at, e.escalation_ratio = t.ts, t.escalation_ratio
        n = t.counters.get("custody.received", 0)
        if n != e.custody_n or not e.custody_at:
            e.custody_n, e.custody_at = n, t.ts
        errors = {k: t.counters.get(k, 0) for k in CAPTURE_ERROR_COUNTERS if t.counters.get(k, 0)}
        if errors:
            text = ", ".join(f"{k} {n}" for k, n in errors.items())
            if text != e.last_error:
                e.last_error, e.last_error_ts = text, t.ts

    def rows(self, stats: FleetStats, now: float | None = None) -> list[dict[str, Any]]:
        """One JSON-ready row per device, for the Fleet page."""
        now = time.time() if now is None else now
        out = []
        with self._lock:
            extras = dict(self.devices)
        for r in stats.rows():
            e = extras.get(r.device, Extra())
            lag = (now - e.custody_at) if r.outbox and e.custody_at else 0.0
            out.append({"device": r.device, "task": r.task, "state": r.state, "since": e.since,
                        "model": r.model, "fps": round(r.fps, 2), "preds": r.preds,
                        "escalation_ratio": round(e.escalation_ratio, 4), "outbox": r.outbox,
                        "custody_lag_s": round(lag, 1), "last_error": e.last_error,
                        "last_error_ts": e.last_error_ts})
        return out

    def device(self, device: str) -> tuple[list[schemas.Prediction], list[tuple[float, str]]]:
        with self._lock:
            e = self.devices.get(device)
            return (list(e.preds)[::-1], list(e.events)[::-1]) if e else ([], [])
