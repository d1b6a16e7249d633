"""Context columns the hub knows and devices do not: time of day, device metadata, fleet signals."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

_TWO_PI = 2.0 * math.pi
_TIME_COLUMNS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")


class ContextBuilder:
    """Builds the (N, K) ``ctx`` block in the configured column order.

    Two halves, so fusion can do the per-row work once per batch: :meth:`device_values` is what a
    device's rows get from the hub's state when they arrive (events_1m, meta:, telemetry:), and
    :meth:`build` adds the columns computed from capture times, for many rows at once."""

    def __init__(self, names: list[str], devices: dict[str, dict[str, float]] | None = None,
                 meta_default: float = 0.0) -> None:
        self.names = tuple(names)
        self.devices = devices or {}
        self.meta_default = float(meta_default)
        self.late_col = self.names.index("late_label") if "late_label" in self.names else -1
        self._time = [(k, n) for k, n in enumerate(self.names) if n in _TIME_COLUMNS]
        self._dev = [(k, n) for k, n in enumerate(self.names) if n not in _TIME_COLUMNS and n != "late_label"]
        self.has_device_columns = bool(self._dev)
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
    def device_values(self, device: str, now: float) -> np.ndarray | None:
        """(K,) values of the device-dependent columns now (others 0); None when there are none."""
        if not self._dev:
            return None
        out = np.zeros(len(self.names), np.float32)
        for k, name in self._dev:
            if name == "events_1m":
                d = self._events.get(device)
                if d:
                    while d and d[0] < now - 60.0:
                        d.popleft()
                    out[k] = len(d)
            elif name.startswith("meta:"):
                out[k] = self.devices.get(device, {}).get(name[5:], self.meta_default)
            elif name.startswith("telemetry:"):
                out[k] = self._telemetry.get(device, {}).get(name[10:], 0.0)
        return out

    def build(self, ts: np.ndarray, dev_rows: np.ndarray | None = None, late: np.ndarray | None = None) -> np.ndarray:
        """Context for rows captured at unix times ``ts``: ``dev_rows`` (N, K) from :meth:`device_values`,
        ``late`` (N,) bool for label-only rows."""
        n = ts.shape[0]
        out = np.array(dev_rows, np.float32) if dev_rows is not None else np.zeros((n, len(self.names)), np.float32)
        if self._time:
            day = ts.astype(np.float64) / 86400.0
            frac = day % 1.0
            for k, name in self._time:
                if name == "hour_sin":
                    out[:, k] = np.sin(_TWO_PI * frac)
                elif name == "hour_cos":
                    out[:, k] = np.cos(_TWO_PI * frac)
                else:
                    # 1970-01-01 was a Thursday; +3 makes Monday 0.
                    dow = (np.floor(day) + 3.0) % 7.0 + frac
                    out[:, k] = (np.sin if name == "dow_sin" else np.cos)(_TWO_PI * dow / 7.0)
        if late is not None and self.late_col >= 0:
            out[:, self.late_col] = late
        return out

    def rows(self, device: str, ts: np.ndarray, now: float) -> np.ndarray:
        """Context for rows of one device captured at unix times ``ts`` (``now`` on the bridge's clock)."""
        dev = self.device_values(device, now)
        return self.build(ts, None if dev is None else np.broadcast_to(dev, (ts.shape[0], len(self.names))))
