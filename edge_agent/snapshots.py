"""Event snapshots: the frame of an alert class's newest event, a retained JPEG for people to look at.

A snapshot is the latest picture, so it never waits in the outbox: an old one is worth nothing once
a newer exists. It is published at once (QoS 0, retained) or shed, each shed counted by reason:

- ``rate``: this class sent one less than ``min_interval_s`` ago;
- ``backlog``: more events and escalations wait in the outbox than one in-flight window: the link is not
  keeping up, and alerts and the cloud go first;
- ``too_large``: over ``max_bytes`` even at low JPEG quality;
- ``no_frame``: the frame is gone (a cloud-decided event whose escalation carried no JPEG).

An escalated frame's JPEG (what the escalation carried) is kept until the cloud's answer decides
whether it is an alert, so a cloud-decided event gets its picture without keeping raw frames.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

import numpy as np

from edge_agent.config import SnapshotSettings
from shared.process.counters import Counters
from shared.protocol import rawsample
from shared.protocol.rawsample import RawError

KEEP = 256  # escalated frames' JPEGs kept for their answer, at most (the oldest go first)
FALLBACK_QUALITY = (50, 30)  # tried in turn when a frame is over max_bytes


def is_frame(sample: np.ndarray) -> bool:
    """A camera frame (H x W x 3 or H x W, uint8), as opposed to a sensor window."""
    return sample.dtype == np.uint8 and (sample.ndim == 2 or (sample.ndim == 3 and sample.shape[2] in (1, 3)))


class Snapshots:
    def __init__(self, cfg: SnapshotSettings, counters: Counters, publish: Callable[[str, bytes], bool],
                 backlog: Callable[[], int], clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.counters = counters
        self.publish = publish  # (class slug, jpeg) -> sent
        self.backlog = backlog  # outbox rows of the classes that go first (events, escalations)
        self.clock = clock
        self._kept: OrderedDict[int, bytes] = OrderedDict()
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()  # keep() runs on the infer thread, take() also on the network thread

    def keep(self, sample: int, jpeg: bytes) -> None:
        """The JPEG an escalation carried, for the event its answer may raise."""
        if not self.cfg.enabled:
            return
        with self._lock:
            self._kept[sample] = jpeg
            while len(self._kept) > KEEP:
                self._kept.popitem(last=False)

    def forget(self, sample: int) -> None:
        with self._lock:
            self._kept.pop(sample, None)

    def on_event(self, cls: str, sample: int, frame: np.ndarray | None) -> bool:
        """An event of alert class ``cls`` (its slug) on ``sample``; ``frame`` when it is at hand."""
        with self._lock:
            kept = self._kept.pop(sample, None)
        if not self.cfg.enabled:
            return False
        now = self.clock()
        last = self._last.get(cls)
        if last is not None and now - last < self.cfg.min_interval_s:
            return self._shed("rate")
        if self.backlog() > 0:
            return self._shed("backlog")
        jpeg = kept if kept is not None and len(kept) <= self.cfg.max_bytes else None
        if jpeg is None and frame is not None and is_frame(frame):
            jpeg = self._encode(frame)
            if jpeg is None:
                return False
        if jpeg is None:
            return self._shed("too_large" if kept is not None else "no_frame")
        if not self.publish(cls, jpeg):
            return False  # counted by the publisher (snapshot.not_sent.<reason>)
        self._last[cls] = now
        return True

    def _encode(self, frame: np.ndarray) -> bytes | None:
        for q in (self.cfg.quality, *(f for f in FALLBACK_QUALITY if f < self.cfg.quality)):
            try:
                data = rawsample.encode(frame, "jpeg", q).tobytes()
            except RawError as exc:
                self._shed(f"encode_{exc.reason}")
                return None
            if len(data) <= self.cfg.max_bytes:
                return data
        self._shed("too_large")
        return None

    def _shed(self, reason: str) -> bool:
        self.counters.inc(f"snapshot.shed.{reason}")
        return False
