"""What the agent measures about itself: samples, inferences, escalations, latency, bytes up and raw.

The raw side is what shipping the sample itself would cost: a frame as JPEG at the configured
quality (encoded every ``jpeg_every`` frames, a running mean in between, since encoding each one
would cost as much as inference), a sensor window as its raw dtype. Every count is taken under one
lock: the infer, sender, network and telemetry threads all add to it.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from edge_agent.config import TelemetrySettings


@dataclass(frozen=True, slots=True)
class Reading:
    """One consistent read of the meter, for a Telemetry message."""

    frames: int
    inferred: int
    escalated: int
    uplink_bytes: int
    raw_bytes: int
    fps: float
    latency_ms_p50: float
    latency_ms_p99: float

    @property
    def escalation_ratio(self) -> float:
        return min(1.0, self.escalated / self.inferred) if self.inferred else 0.0


class Meter:
    def __init__(self, cfg: TelemetrySettings) -> None:
        self.cfg = cfg
        self._lock = threading.Lock()
        self.frames = 0
        self.inferred = 0
        self.escalated = 0
        self.uplink_bytes = 0
        self.raw_bytes = 0
        self.latencies: deque[float] = deque(maxlen=4096)
        self._jpeg_mean = 0.0
        self._jpeg_n = 0
        self._read_frames = 0
        self._read_t = time.monotonic()

    def sample(self, raw: np.ndarray) -> int:
        """Count one captured sample and what it would cost raw; returns its index in this boot."""
        with self._lock:
            n = self.frames
            self.frames += 1
        size = self._raw_size(raw, n)
        with self._lock:
            self.raw_bytes += size
        return n

    def _raw_size(self, raw: np.ndarray, n: int) -> int:
        if not (raw.ndim == 3 and raw.dtype == np.uint8):
            return int(raw.nbytes)
        if self._jpeg_n == 0 or n % self.cfg.jpeg_every == 0:
            import cv2

            ok, buf = cv2.imencode(".jpg", raw, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            if ok:
                self._jpeg_n += 1
                self._jpeg_mean += (len(buf) - self._jpeg_mean) / self._jpeg_n
        return int(round(self._jpeg_mean))

    def inference(self, seconds: float) -> None:
        self.latencies.append(seconds)
        with self._lock:
            self.inferred += 1

    def new_model(self) -> None:
        """A swap: latency percentiles start again, so they are the serving model's own."""
        self.latencies.clear()

    def escalation(self) -> None:
        with self._lock:
            self.escalated += 1

    def uplink(self, nbytes: int) -> None:
        with self._lock:
            self.uplink_bytes += nbytes

    def read(self) -> Reading:
        """Totals, and the sample rate since the previous read (one reader: the telemetry loop)."""
        now = time.monotonic()
        lat = np.fromiter(self.latencies, dtype=np.float64) * 1000.0
        with self._lock:
            frames, inferred, esc, up, raw = (self.frames, self.inferred, self.escalated, self.uplink_bytes,
                                              self.raw_bytes)
        fps = (frames - self._read_frames) / max(1e-6, now - self._read_t)
        self._read_frames, self._read_t = frames, now
        return Reading(frames, inferred, esc, up, raw, fps,
                       float(np.percentile(lat, 50)) if lat.size else 0.0,
                       float(np.percentile(lat, 99)) if lat.size else 0.0)
