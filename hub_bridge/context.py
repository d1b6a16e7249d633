"""Context columns the hub knows and devices do not: time of day, device metadata, fleet signals."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_TWO_PI = 2.0 * math.pi


class ContextBuilder:
    """Builds the (N, K) ``ctx`` block for rows of one device, in the configured column order."""

    def __init__(self, names: list[str], devices: dict[str, dict[str, float]] | None = None,
                 meta_default: float = 0.0) -> None:
        self.names = tuple(names)
        self.devices = devices or {}
        self.meta_default = float(meta_default)
        self.late_col = self.names.index("late_label") if "late_label" in self.names else -1
        self._telemetry: dict[str, dict[str, float]] = {}
        self._events: dict[str, deque[float]] = {}

    # ---- inputs -----------------------------------------------------------
    def note_telemetry(self, device: str, values: dict[str, float]) -> None:
        self._telemetry[device] = values

    def note_event(self, device: str, now: float) -> None:
        d = self._events.get(device)
        if d is None:
            d = self._events[device] = deque(maxlen=1024)
        d.append(now)

    def forget(self, device: str) -> None:
        self._telemetry.pop(device, None)
        self._events.pop(device, None)

    # ---- output -----------------------------------------------------------
    def rows(self, device: str, ts: np.ndarray, now: float) -> np.ndarray:
        """Context for rows captured at unix times ``ts`` (``now`` on the bridge's clock, for events_1m)."""
        n = ts.shape[0]
        out = np.zeros((n, len(self.names)), np.float32)
        if not self.names:
            return out
        day = ts.astype(np.float64) / 86400.0
        for k, name in enumerate(self.names):
            if name == "hour_sin":
                out[:, k] = np.sin(_TWO_PI * (day % 1.0))
            elif name == "hour_cos":
                out[:, k] = np.cos(_TWO_PI * (day % 1.0))
            elif name in ("dow_sin", "dow_cos"):
                # 1970-01-01 was a Thursday; +3 makes Monday 0.
                dow = (np.floor(day) + 3.0) % 7.0 + (day % 1.0)
                fn = np.sin if name == "dow_sin" else np.cos
                out[:, k] = fn(_TWO_PI * dow / 7.0)
            elif name == "late_label":
                pass  # set per row when a late label is sent
            elif name == "events_1m":
                d = self._events.get(device)
                if d:
                    while d and d[0] < now - 60.0:
                        d.popleft()
                    out[:, k] = len(d)
            elif name.startswith("meta:"):
                out[:, k] = self.devices.get(device, {}).get(name[5:], self.meta_default)
            elif name.startswith("telemetry:"):
                out[:, k] = self._telemetry.get(device, {}).get(name[10:], 0.0)
        return out
