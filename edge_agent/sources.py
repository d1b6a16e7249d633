"""Sample sources: each yields :class:`Sample` (raw array as the task expects, capture time, ref).

Sources are plain generators driven by the capture thread; they check ``stop`` between
samples and pace themselves when configured with an ``fps``. OpenCV is imported only by
the image sources, so a sensor-only agent runs without it.

Failures are loud and counted (the counters travel in telemetry):

- a source that can never work (a missing folder or file, a video OpenCV cannot open, a
  folder with nothing to read) raises :class:`SourceUnavailable`, one line naming the path:
  the agent exits non-zero instead of idling;
- a live source (camera, stream) that is down is retried with exponential backoff and
  jitter, each failed attempt counted (``capture.open_failed``), each outage counted
  (``capture.lost``) and each recovery counted (``capture.reconnects``); the log says so on
  the 1st, 2nd, 4th, 8th... attempt rather than on every one;
- an unreadable image in a folder is skipped, counted (``capture.unreadable``) and named once.

Refs count frames across reconnects (``name#N`` never restarts at 0), and a stream's URL
appears in refs and logs only as host and path (shared.process.redact): never its credentials.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_agent import config as C
from shared.process.counters import Counters
from shared.process.redact import url_label

log = logging.getLogger(__name__)

# Counters that mean "capture is failing" (lepton monitor adds them up as capture errors).
ERROR_COUNTERS = ("capture.errors", "capture.open_failed", "capture.lost", "capture.unreadable")


class SourceUnavailable(OSError):
    """A source that can never deliver (missing path, unopenable file): the agent stops with an error."""


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


class Backoff:
    """Delays for retrying a live source: first, doubling up to a ceiling, each with jitter."""

    def __init__(self, first: float, ceiling: float) -> None:
        self.first, self.ceiling = first, max(first, ceiling)
        self._next = first

    def next(self) -> float:
        d = self._next
        self._next = min(self._next * 2, self.ceiling)
        # Jitter: cameras of one site that lost the same switch must not come back in lockstep.
        return d * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self._next = self.first


def _pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def _capture_frames(cap_factory: Callable[[], object], name: str, fps: float | None, stop: threading.Event, *,
                    loop: bool, backoff: Backoff | None, counters: Counters, where: str = "") -> Iterator[Sample]:
    """Frames from cv2.VideoCapture. Live sources (``backoff`` given) reopen on loss, forever;
    files end (or loop) and raise SourceUnavailable when they cannot be read at all."""
    pacer = Pacer(fps, stop)
    n = 0  # frames delivered, across reopenings: the ref's number
    attempts = 0  # consecutive attempts that delivered nothing (the current outage)
    down_since: float | None = None
    while not stop.is_set():
        cap = cap_factory()
        got = 0
        try:
            if not cap.isOpened():  # type: ignore[attr-defined]
                counters.inc("capture.open_failed")
                if backoff is None:
                    raise SourceUnavailable(f"cannot open {where or name}: OpenCV reads no video from it")
            while not stop.is_set() and cap.isOpened():  # type: ignore[attr-defined]
                ok, frame = cap.read()  # type: ignore[attr-defined]
                if not ok or frame is None:
                    break
                if got == 0 and down_since is not None:
                    counters.inc("capture.reconnects")
                    log.warning("%s delivering again after %d failed attempt(s), %.0f s down", name, attempts,
                                time.monotonic() - down_since)
                    attempts, down_since = 0, None
                    if backoff is not None:
                        backoff.reset()
                got += 1
                if not pacer.wait():
                    return
                yield Sample(frame, time.time(), f"{name}#{n}")
                n += 1
        finally:
            cap.release()  # type: ignore[attr-defined]
        if stop.is_set():
            return
        if backoff is None:
            if n == 0:
                raise SourceUnavailable(f"{where or name}: OpenCV opened it but read no frame")
            if not loop or got == 0:
                return
            continue
        if got:
            counters.inc("capture.lost")
            down_since = time.monotonic()
            attempts = 0
            log.warning("%s stopped delivering after %d frames; reconnecting", name, got)
        else:
            attempts += 1
            down_since = down_since if down_since is not None else time.monotonic()
            counters.inc("capture.retries")
            (log.warning if _pow2(attempts) else log.debug)(
                "%s unavailable (attempt %d, down %.0f s); retrying with backoff up to %g s", name, attempts,
                time.monotonic() - down_since, backoff.ceiling)
        if stop.wait(backoff.next()):
            return


def _quiet_opencv():
    """cv2, with OpenCV's and FFmpeg's own per-attempt warnings off (two stderr lines per failed
    reconnect otherwise); our counted, backed-off log lines say what happens instead.
    OPENCV_FFMPEG_LOGLEVEL set by the user (e.g. 32 to debug a camera) is kept."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    import cv2

    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    return cv2


def check_source(cfg: C.SourceConfig) -> None:
    """Raise SourceUnavailable for a source that cannot work as configured (before anything starts)."""
    if isinstance(cfg, (C.VideoSource, C.CsvSensorSource)) and not cfg.path.is_file():
        what = "video" if isinstance(cfg, C.VideoSource) else "CSV"
        raise SourceUnavailable(f"{what} file {cfg.path} does not exist" if not cfg.path.exists()
                                else f"{what} source {cfg.path} is not a file")
    if isinstance(cfg, C.FolderSource):
        if not cfg.path.is_dir():
            raise SourceUnavailable(f"folder {cfg.path} does not exist" if not cfg.path.exists()
                                    else f"folder source {cfg.path} is not a directory")
        if not any(p.is_file() for p in cfg.path.glob(cfg.pattern)):
            raise SourceUnavailable(f"folder {cfg.path} has no files matching {cfg.pattern!r}")


def camera_source(cfg: C.CameraSource, stop: threading.Event, counters: Counters) -> Iterator[Sample]:
    cv2 = _quiet_opencv()

    def factory():
        cap = cv2.VideoCapture(cfg.index)
        if cfg.width:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, cfg.width)
        if cfg.height:
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, cfg.height)
        return cap

    return _capture_frames(factory, f"camera{cfg.index}", cfg.fps, stop, loop=False,
                           backoff=Backoff(cfg.reconnect_s, cfg.reconnect_max_s), counters=counters)


def video_source(cfg: C.VideoSource, stop: threading.Event, counters: Counters) -> Iterator[Sample]:
    import cv2

    return _capture_frames(lambda: cv2.VideoCapture(str(cfg.path)), cfg.path.name, cfg.fps, stop,
                           loop=cfg.loop, backoff=None, counters=counters, where=str(cfg.path))


def stream_params(cfg: C.StreamSource) -> list[int]:
    """OpenCV open parameters: FFmpeg's open and read timeouts (else a silent server stalls it ~30 s)."""
    import cv2

    return [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, int(cfg.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC, int(cfg.read_timeout_s * 1000)]


def stream_source(cfg: C.StreamSource, stop: threading.Event, counters: Counters) -> Iterator[Sample]:
    cv2 = _quiet_opencv()

    params = stream_params(cfg)
    return _capture_frames(lambda: cv2.VideoCapture(cfg.url, cv2.CAP_FFMPEG, params), url_label(cfg.url), cfg.fps,
                           stop, loop=False, backoff=Backoff(cfg.reconnect_s, cfg.reconnect_max_s), counters=counters)


def folder_source(cfg: C.FolderSource, stop: threading.Event, counters: Counters | None = None) -> Iterator[Sample]:
    check_source(cfg)
    return _folder(cfg, stop, counters or Counters())


def _folder(cfg: C.FolderSource, stop: threading.Event, counters: Counters) -> Iterator[Sample]:
    import cv2

    pacer = Pacer(cfg.fps, stop)
    named: set[str] = set()  # unreadable files already logged (each is counted on every pass)
    while not stop.is_set():
        files = sorted(p for p in Path(cfg.path).glob(cfg.pattern) if p.is_file())
        sent = bad = 0
        for p in files:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                bad += 1
                counters.inc("capture.unreadable")
                if p.name not in named and len(named) < 10_000:
                    named.add(p.name)
                    log.warning("skipping %s: not an image OpenCV can read", p)
                continue
            if not pacer.wait():
                return
            yield Sample(img, time.time(), p.name)
            sent += 1
        if files and bad == len(files):
            raise SourceUnavailable(f"folder {cfg.path}: none of its {bad} files is an image OpenCV can read")
        if not cfg.loop or sent == 0:
            return


def replay_source(cfg: C.ReplaySource, task_name: str, stop: threading.Event) -> Iterator[Sample]:
    from lepton_tasks import load_task  # a simulated device only: real ones need no task pack
    from lepton_tasks.refs import sample_ref

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
            yield Sample(ds.raw[i], time.time(), sample_ref(task.name, i))
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


def open_source(cfg: C.SourceConfig, task: str, stop: threading.Event,
                counters: Counters | None = None) -> Iterator[Sample]:
    """The sample iterator for ``cfg``; raises SourceUnavailable at once for a source that cannot work."""
    counters = counters if counters is not None else Counters()
    check_source(cfg)
    if isinstance(cfg, C.CameraSource):
        return camera_source(cfg, stop, counters)
    if isinstance(cfg, C.VideoSource):
        return video_source(cfg, stop, counters)
    if isinstance(cfg, C.StreamSource):
        return stream_source(cfg, stop, counters)
    if isinstance(cfg, C.FolderSource):
        return _folder(cfg, stop, counters)
    if isinstance(cfg, C.ReplaySource):
        return replay_source(cfg, task, stop)
    if isinstance(cfg, C.CsvSensorSource):
        return csv_source(cfg, stop)
    raise TypeError(f"unknown source config {type(cfg).__name__}")
