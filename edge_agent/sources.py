"""Sample sources: each yields :class:`Sample` (raw array as the task expects, capture time, ref).

Sources are plain generators driven by the capture thread; they check ``stop`` between
samples and pace themselves when configured with an ``fps``. OpenCV is imported only by
the image sources, so a sensor-only agent runs without it.
"""

from __future__ import annotations

import csv
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent import config as C

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    raw: np.ndarray
    ts: float
    ref: str = ""


class Pacer:
    """Sleeps (on the stop event) so that samples leave at ``fps``; no-op when fps is None."""

    def __init__(self, fps: float | None, stop: threading.Event) -> None:
        self.period = 1.0 / fps if fps else 0.0
        self.stop = stop
        self._next = time.monotonic()

    def wait(self) -> bool:
        """False when asked to stop."""
        if self.period:
            now = time.monotonic()
            if self._next > now and self.stop.wait(self._next - now):
                return False
            # Never try to catch up a long stall with a burst.
            self._next = max(self._next, time.monotonic() - self.period) + self.period
        return not self.stop.is_set()


def _capture_frames(cap_factory, name: str, fps: float | None, stop: threading.Event, *, loop: bool,
                    reconnect_s: float | None) -> Iterator[Sample]:
    """Frames from cv2.VideoCapture; reopens on loss when ``reconnect_s`` (live), else loops or ends."""
    pacer = Pacer(fps, stop)
    while not stop.is_set():
        cap = cap_factory()
        n = 0
        try:
            if not cap.isOpened():
                log.warning("cannot open %s", name)
            while not stop.is_set() and cap.isOpened():
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                if not pacer.wait():
                    return
                yield Sample(frame, time.time(), f"{name}#{n}")
                n += 1
        finally:
            cap.release()
        if reconnect_s is not None:
            log.warning("%s stopped delivering after %d frames; reopening in %.1fs", name, n, reconnect_s)
            if stop.wait(reconnect_s):
                return
        elif not loop or n == 0:
            return


def camera_source(cfg: C.CameraSource, stop: threading.Event) -> Iterator[Sample]:
    import cv2

    def factory():
        cap = cv2.VideoCapture(cfg.index)
        if cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        if cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        return cap

    return _capture_frames(factory, f"camera{cfg.index}", cfg.fps, stop, loop=False, reconnect_s=cfg.reconnect_s)


def video_source(cfg: C.VideoSource, stop: threading.Event) -> Iterator[Sample]:
    import cv2

    return _capture_frames(lambda: cv2.VideoCapture(str(cfg.path)), cfg.path.name, cfg.fps, stop,
                           loop=cfg.loop, reconnect_s=None)


def stream_source(cfg: C.StreamSource, stop: threading.Event) -> Iterator[Sample]:
    import cv2

    # Never put credentials from the URL into refs or logs.
    name = cfg.url.split("@")[-1].split("?")[0][-120:]
    return _capture_frames(lambda: cv2.VideoCapture(cfg.url), name, cfg.fps, stop, loop=False,
                           reconnect_s=cfg.reconnect_s)


def folder_source(cfg: C.FolderSource, stop: threading.Event) -> Iterator[Sample]:
    import cv2

    pacer = Pacer(cfg.fps, stop)
    while not stop.is_set():
        files = sorted(p for p in Path(cfg.path).glob(cfg.pattern) if p.is_file())
        sent = 0
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                log.debug("skipping unreadable %s", p)
                continue
            if not pacer.wait():
                return
            yield Sample(img, time.time(), p.name)
            sent += 1
        if not cfg.loop or sent == 0:
            return


def replay_source(cfg: C.ReplaySource, task_name: str, stop: threading.Event) -> Iterator[Sample]:
    from lepton_tasks import load_task  # a simulated device only: real ones need no task pack

    task = load_task(cfg.task or task_name)
    ds = task.dataset()
    idx = {"stream": ds.stream, "holdout": ds.holdout, "seed": ds.seed, "all": np.arange(len(ds.y))}[cfg.split]
    idx = idx[cfg.part % cfg.parts::cfg.parts]
    if cfg.shuffle_seed is not None:
        idx = np.random.default_rng(cfg.shuffle_seed).permutation(idx)
    if cfg.limit is not None:
        idx = idx[: cfg.limit]
    pacer = Pacer(cfg.fps, stop)
    while not stop.is_set():
        for i in idx:
            if not pacer.wait():
                return
            yield Sample(ds.raw[i], time.time(), f"{task.name}:{int(i)}")
        if not cfg.loop or len(idx) == 0:
            return


def read_sensor_csv(path: Path, columns: list[int] | None) -> np.ndarray:
    """(time, channels) float32 from a CSV; a first row that does not parse as numbers is a header."""
    rows: list[list[float]] = []
    with open(path, newline="") as f:
        for i, rec in enumerate(csv.reader(f)):
            if not rec:
                continue
            try:
                vals = [float(v) for v in rec]
            except ValueError:
                if i == 0:
                    continue
                raise ValueError(f"{path}:{i + 1}: not numeric: {rec[:4]}") from None
            rows.append(vals if columns is None else [vals[c] for c in columns])
    if not rows:
        return np.zeros((0, 0), np.float32)
    return np.asarray(rows, dtype=np.float32)


def csv_source(cfg: C.CsvSensorSource, stop: threading.Event) -> Iterator[Sample]:
    data = read_sensor_csv(cfg.path, cfg.columns)
    pacer = Pacer(cfg.fps, stop)
    while not stop.is_set():
        sent = 0
        for start in range(0, len(data) - cfg.window + 1, cfg.hop):
            if not pacer.wait():
                return
            yield Sample(np.ascontiguousarray(data[start:start + cfg.window].T), time.time(),
                         f"{cfg.path.name}@{start}")
            sent += 1
        if not cfg.loop or sent == 0:
            return


def open_source(cfg: C.SourceConfig, task: str, stop: threading.Event) -> Iterator[Sample]:
    if isinstance(cfg, C.CameraSource):
        return camera_source(cfg, stop)
    if isinstance(cfg, C.VideoSource):
        return video_source(cfg, stop)
    if isinstance(cfg, C.StreamSource):
        return stream_source(cfg, stop)
    if isinstance(cfg, C.FolderSource):
        return folder_source(cfg, stop)
    if isinstance(cfg, C.ReplaySource):
        return replay_source(cfg, task, stop)
    if isinstance(cfg, C.CsvSensorSource):
        return csv_source(cfg, stop)
    raise TypeError(f"unknown source config {type(cfg).__name__}")
