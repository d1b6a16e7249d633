"""Service lifecycle: start / stop / join around a stop event, and a main() helper for SIGTERM.

A service's constructor does no I/O; ``start()`` opens connections and spawns threads,
``stop()`` sets the stop event and closes them, ``join()`` waits. Worker loops wait on
``self.stopping`` (an Event) rather than sleeping, so shutdown is prompt.
"""

from __future__ import annotations

import argparse
import faulthandler
import json
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

from pydantic import BaseModel

from shared.process.config import ConfigError, ignored_env, load_config, redacted

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a dependency (broker, binary) is missing
SLOW_STOP_S = 2.0  # a signalled stop still running after this logs every thread's stack (stderr)


class Service:
    """Base class. Subclasses implement ``_start()`` and ``_stop()``, and may add threads via ``spawn``."""

    name = "service"

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = False
        self.errors: list[BaseException] = []

    def spawn(self, target: Callable[[], None], name: str) -> threading.Thread:
        """Run ``target`` in a daemon thread; an exception is recorded and stops the service."""

        def guarded() -> None:
            try:
                target()
            except BaseException as exc:  # record, then stop the whole service: no zombie halves
                self.errors.append(exc)
                log.exception("%s: thread %s crashed", self.name, name)
                self.stopping.set()

        t = threading.Thread(target=guarded, name=f"{self.name}-{name}", daemon=True)
        self._threads.append(t)
        t.start()
        return t

    def start(self) -> Service:
        if self._started:
            raise RuntimeError(f"{self.name} already started")
        self._started = True
        self.stopping.clear()
        self._start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        if not self._started:
            return
        self.stopping.set()
        try:
            self._stop()
        finally:
            self.join(timeout)
            self._started = False

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the service's threads; True if all ended."""
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(timeout)
        return not any(t.is_alive() for t in self._threads)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the service is asked to stop (by stop(), a signal or a crash)."""
        return self.stopping.wait(timeout)

    def _start(self) -> None:
        raise NotImplementedError

    def _stop(self) -> None:
        pass

    def __enter__(self) -> Service:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_until_signal(service: Service, *, duration: float | None = None) -> int:
    """Start ``service``, run until SIGTERM/SIGINT (or ``duration`` seconds), stop it; return an exit code."""
    def handler(signum: int, frame: object) -> None:
        log.info("%s: got %s, shutting down", service.name, signal.Signals(signum).name)
        service.stopping.set()
        # A stop that is slow says where: every thread's stack, from a watchdog that needs no GIL.
        faulthandler.dump_traceback_later(SLOW_STOP_S, exit=False)

    old = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        service.start()
        _wait_awake(service, duration)
    finally:
        service.stop()
        faulthandler.cancel_dump_traceback_later()
        for s, h in old.items():
            signal.signal(s, h)
    return EXIT_ERROR if service.errors else EXIT_OK


def _wait_awake(service: Service, duration: float | None, slice_s: float = 0.25) -> None:
    """Wait for the stop (or ``duration``) in short slices. Python runs a signal's handler on the main
    thread only, and only once that thread runs bytecode: a SIGTERM the kernel hands to another thread
    leaves a main thread blocked in one long wait asleep (a worker ignored SIGTERM for 15 s, until
    `lepton up` killed it)."""
    end = None if duration is None else time.monotonic() + duration
    while not service.stopping.wait(slice_s if end is None else max(0.0, min(slice_s, end - time.monotonic()))):
        if end is not None and time.monotonic() >= end:
            return


def end_process(rc: int) -> NoReturn:
    """End a role's process with ``rc`` once its service has stopped, without the interpreter's shutdown.
    Everything is saved, acknowledged and the death message sent by then; what is left is finalization,
    and on a loaded 2-core box its last garbage collection alone took 2-3 s in an agent and 7-9 s in a
    worker after a retrain (torch, numba and aeon state; a cloud fit abandoned by the stop holding the
    GIL at times): past the point where `lepton up` kills it, for nothing."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe: nothing more can be said
            pass
    os._exit(rc)


C = TypeVar("C", bound=BaseModel)


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """parse_args, except that an unknown option is reported with the usage of the (sub)command it was
    given to (``lepton up --bogus`` shows `lepton up`'s usage, not the top-level one)."""
    args, extra = parser.parse_known_args(argv)
    if extra:
        p = parser
        while True:
            sub = next((a for a in p._actions if isinstance(a, argparse._SubParsersAction)), None)
            name = getattr(args, sub.dest, None) if sub is not None else None
            if sub is None or name not in sub.choices:
                break
            p = sub.choices[name]
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def add_service_args(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every long-running Lepton service takes."""
    p.add_argument("--config", type=Path, help="TOML config file (LEPTON_<ROLE>__CONFIG or LEPTON_CONFIG also work); "
                                               "LEPTON_<ROLE>__* and LEPTON_* env vars override it (docs/DEPLOY.md).")
    p.add_argument("--validate-config", action="store_true",
                   help="Check the config, print it as JSON (secrets masked), exit.")
    p.add_argument("--duration", type=float, default=None, help="Run for this many seconds, then stop cleanly.")
    p.add_argument("--log-level", default="INFO", help="Logging level (DEBUG, INFO, WARNING).")
    return p


def log_ignored_env(prog: str, model: type[BaseModel]) -> None:
    """One line naming the shared LEPTON_* variables this role does not read (they are meant for another)."""
    ignored = ignored_env(model)
    if ignored:
        log.info("%s: ignoring %s (no such key in %s)", prog, ", ".join(ignored), model.__name__)


def run_service_cli(args: argparse.Namespace, prog: str, model: type[C], make: Callable[[C], Service]) -> int:
    """Load and check the config, then run the service until a signal; one line and an exit code on errors."""
    logging.basicConfig(level=getattr(logging, str(args.log_level).upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(model, args.config)
    except ConfigError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    log_ignored_env(prog, model)
    if args.validate_config:
        print(json.dumps(redacted(cfg), indent=2))
        return EXIT_OK
    try:
        return run_until_signal(make(cfg), duration=args.duration)
    except (OSError, ValueError) as exc:  # unreadable key, state dir not writable, ...
        log.error("%s cannot run: %s", prog, exc)
        return EXIT_ERROR
