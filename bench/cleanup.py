"""A bench leaves nothing running, also when it is stopped by SIGTERM (``timeout``), SIGHUP or Ctrl-C.

Every bench calls :func:`guard` first thing in ``main()``. Then:

- SIGTERM and SIGHUP raise ``SystemExit`` in the main thread, as Ctrl-C raises ``KeyboardInterrupt``,
  so the bench's own ``finally:`` blocks run (subjects stopped, ``broker.stop()``);
- the process tree below the bench (the mosquitto it started, which runs in a session of its own,
  multiprocessing children, ``lepton up`` and everything *it* started) is noted when the signal
  comes, before any of it can be orphaned by a parent that dies first;
- at exit, whatever of that tree and of the bench's current descendants is still alive gets
  SIGTERM, then SIGKILL after a grace period. A process is matched by pid *and* start time, so a
  pid the kernel gave to something else meanwhile is left alone.
"""

from __future__ import annotations

import atexit
import os
import signal
import time
from pathlib import Path

GRACE_S = 5.0
_noted: set[tuple[int, int]] = set()
_installed = False


def _stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time in clock ticks, state) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[19]), fields[0]


def descendants(root: int | None = None) -> set[tuple[int, int]]:
    """(pid, start time) of every live process below ``root`` (default: this one), zombies left out."""
    root = os.getpid() if root is None else root
    children: dict[int, list[tuple[int, int]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        st = _stat(int(entry.name))
        if st is not None and st[2] != "Z":
            children.setdefault(st[0], []).append((int(entry.name), st[1]))
    out: set[tuple[int, int]] = set()
    todo = [root]
    while todo:
        for pid, start in children.get(todo.pop(), []):
            if (pid, start) not in out:
                out.add((pid, start))
                todo.append(pid)
    return out


def _alive(pid: int, start: int) -> bool:
    st = _stat(pid)
    return st is not None and st[1] == start and st[2] != "Z"


def reap(grace_s: float = GRACE_S) -> list[int]:
    """SIGTERM every noted or current descendant still alive, SIGKILL what outlives ``grace_s``;
    returns the pids that had to be signalled."""
    procs = {p for p in _noted | descendants() if _alive(*p)}
    for pid, _ in procs:
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(*p) for p in procs):
        try:
            os.waitpid(-1, os.WNOHANG)  # our own children become zombies until reaped
        except ChildProcessError:
            pass
        time.sleep(0.05)
    for pid, start in procs:
        if _alive(pid, start):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    return sorted(pid for pid, _ in procs)


def _on_signal(signum: int, frame: object) -> None:
    _noted.update(descendants())
    # A second signal while the bench unwinds must not cut its cleanup short.
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, signal.SIG_IGN)
    raise SystemExit(128 + signum)


def guard() -> None:
    """Install the handlers and the exit-time reaper (idempotent; main thread only)."""
    global _installed
    if _installed:
        return
    _installed = True
    for s in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(s, _on_signal)
    atexit.register(reap)
