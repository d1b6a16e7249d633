"""The cloud model's training, off the learner's thread.

A refresh of the cloud CNN takes tens of seconds on a CPU; on the learner's thread it stalled
ingestion (fused batches piled up, went unacknowledged and came back as copies) and kept the edge
from learning meanwhile. A :class:`CloudJob` trains on a snapshot of the labelled raw samples (arrays
copied on the learner's thread) on a thread of its own; the learner takes the result when it is
done (:meth:`take`) and decides whether it replaces the answering model. At most one job runs at a
time. A stopping worker interrupts it (the training loop checks the stop event) and its result is
dropped.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from cloud_worker.models.cloudmodels import RawCloud
from cloud_worker.models.train import Interrupted

log = logging.getLogger(__name__)


class CloudJob:
    def __init__(self, background: bool = True) -> None:
        self.background = background  # False: run() trains inline (CLIs, tests: deterministic)
        self._thread: threading.Thread | None = None
        self._result: RawCloud | BaseException | None = None
        self._meta: dict = {}
        self._lock = threading.Lock()

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self, fit: Callable[[], RawCloud], meta: dict) -> None:
        """Start ``fit`` (a closure over a snapshot); inline when not in the background."""
        if self.busy:
            raise RuntimeError("a cloud job is already running")

        def target() -> None:
            try:
                out: RawCloud | BaseException = fit()
            except Interrupted as exc:
                out = exc
            except Exception as exc:  # a failed fit must not end the learner: reported through take()
                log.exception("cloud model training failed")
                out = exc
            with self._lock:
                self._result = out

        with self._lock:
            self._result, self._meta = None, dict(meta)
        if not self.background:
            target()
            return
        self._thread = threading.Thread(target=target, name="cloud-fit", daemon=True)
        self._thread.start()

    def take(self) -> tuple[RawCloud | BaseException, dict] | None:
        """The finished job's result (a model, or the exception that ended it) and its meta, once."""
        if self.busy:
            return None
        with self._lock:
            out, self._result = self._result, None
            return None if out is None else (out, self._meta)

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)
