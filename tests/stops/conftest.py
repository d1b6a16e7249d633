"""What every role's stop test needs: a CPU hog on every core, and a timed SIGTERM.

The bound is half of `lepton up`'s kill timeout: a role that takes longer on a busy box is one
unlucky moment away from SIGKILL (a worker was killed at 15 s with its buffer unsaved).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lepton_cli.up import KILL_TIMEOUT_S

BOUND_S = KILL_TIMEOUT_S / 2


def clean_env() -> dict[str, str]:
    """The environment without LEPTON_* settings (each test names its own config), with Python's fault
    handler on: a process that does not stop in time is sent SIGABRT and prints every thread's stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    return {**env, "PYTHONFAULTHANDLER": "1"}


class Hog:
    """One busy-loop process per core, started and ended by the test (killed in finally)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self) -> Hog:
        for _ in range(os.cpu_count() or 2):
            self.procs.append(subprocess.Popen([sys.executable, "-c", "while True: pass"]))
        return self

    def busy(self) -> bool:
        return bool(self.procs) and all(p.poll() is None for p in self.procs)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait(10)
        self.procs = []


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory):
    from cloud_worker.releasing.keys import init_keys

    d = tmp_path_factory.mktemp("keys")
    init_keys(d)
    return d


@pytest.fixture
def hog() -> Iterator[Hog]:
    h = Hog()
    try:
        yield h
    finally:
        h.stop()


@dataclass
class Stopped:
    rc: int
    seconds: float
    output: str


def spawn(argv: list[str], log: Path) -> subprocess.Popen:
    """A role's process, its output to ``log`` (a pipe nobody reads until the end could fill and block it)."""
    with open(log, "ab") as f:
        return subprocess.Popen(argv, env=clean_env(), stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)


def sigterm(proc: subprocess.Popen, log: Path, limit: float = KILL_TIMEOUT_S) -> Stopped:
    """SIGTERM ``proc`` and time its exit; past ``limit`` (when `lepton up` would kill it) aborted."""
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        rc = proc.wait(limit)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)  # its stacks, for the failure message (clean_env)
        try:
            rc = proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait(10)
    took = time.monotonic() - t0
    return Stopped(rc, took, log.read_text(errors="replace")[-20000:])


def reap(proc: subprocess.Popen) -> None:
    """Whatever a failed round left running is killed, so the next round starts clean."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


def within_bound(stopped: Stopped, took: list[float]) -> None:
    """The stop's verdict: exit 0, within half of `lepton up`'s kill timeout; its time joins ``took``."""
    assert stopped.rc == 0, stopped.output
    assert stopped.seconds < BOUND_S, (stopped.seconds, stopped.output)
    took.append(round(stopped.seconds, 2))
