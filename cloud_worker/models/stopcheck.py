"""Stopping in the middle of long work: a stop event per thread, checked between steps and layers.

A SIGTERM must end a retrain within a second of wall time however loaded the box is: `lepton up`
kills a service 15 s after SIGTERM, and a worker that checked its stop event only between
mini-batches took 12.7 s to notice on a busy 2-core box (a window task's whole-model retrain) and
was killed with its buffer unsaved. The long steps run deep inside scoring, calibration, teaching
and export code that takes no stop parameter, so the learner sets its stop event for its thread
(:func:`watching`) and everything below it checks that one:

- every torch module's forward (one process-wide pre-hook: between layers, so a forward pass over a
  large batch of frames is not one long step), and during training every layer's backward (a hook
  on each layer's input gradient);
- loops over chunks (:func:`chunks`), sized by the time each chunk took, not by a count: the same
  count of windows takes four times longer on a loaded box.

Outside a watched section (the answering thread, the CLIs) the hook does nothing but one lookup.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

TARGET_S = 0.2  # wall time between two checks that chunk sizing aims for (well under the one-second bound)

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


class Interrupted(RuntimeError):
    """Work stopped because the service is stopping; its half-done result must not be used."""


def current() -> threading.Event | None:
    """The stop event this thread is watching (None outside a watched section)."""
    return getattr(_local, "stop", None)


def check(stop: threading.Event | None = None) -> None:
    """Raise Interrupted when ``stop`` (default: this thread's watched event) is set."""
    ev = stop if stop is not None else current()
    if ev is not None and ev.is_set():
        raise Interrupted("stopping: work abandoned")


@contextmanager
def watching(stop: threading.Event | None) -> Iterator[None]:
    """Within the block, this thread's torch forwards, backwards and chunk loops check ``stop``.
    ``watching(None)`` shields a block that must finish (a version being written)."""
    _install()
    prev = current()
    _local.stop = stop
    try:
        yield
    finally:
        _local.stop = prev


def chunks(n: int, first: int = 16, target_s: float = TARGET_S, most: int = 1024) -> Iterator[slice]:
    """Slices covering ``range(n)`` in order, each sized so that it takes about ``target_s`` (from the
    time per item of the chunk before, at most doubling: a box that gets busier between two chunks must
    not meet the largest one); the watched stop event is checked before each. The work in a chunk may
    hold the GIL throughout (numba), so its length bounds how long every other thread waits too."""
    i, size = 0, max(1, first)
    while i < n:
        check()
        t0 = time.perf_counter()
        yield slice(i, min(n, i + size))
        i += size
        took = time.perf_counter() - t0
        want = target_s * size / took if took > 0 else float(most)
        size = int(max(1, min(most, 2 * size, want)))


def run_chunked(fn: Callable[[slice], object], n: int, first: int = 16) -> list:
    """``[fn(s) for s in chunks(n)]``: a long transform split so the stop is checked between parts."""
    return [fn(s) for s in chunks(n, first)]


def _grad_hook(grad: torch.Tensor) -> None:
    check()


def _pre_hook(module: torch.nn.Module, args: tuple) -> None:
    ev = getattr(_local, "stop", None)
    if ev is None:
        return None
    if ev.is_set():
        raise Interrupted("stopping: abandoned in the middle of a forward pass")
    if torch.is_grad_enabled() and not torch.jit.is_tracing():
        for a in args:  # the backward pass then checks as it reaches each layer
            if isinstance(a, torch.Tensor) and a.requires_grad:
                a.register_hook(_grad_hook)
    return None


def _install() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            torch.nn.modules.module.register_module_forward_pre_hook(_pre_hook)
            _installed = True
