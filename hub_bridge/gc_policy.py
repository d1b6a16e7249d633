"""The cyclic garbage collector while a bridge runs.

Its collections stop every thread: full ones took 50–200 ms with numpy, pydantic and paho loaded, and
each delayed every alert that arrived meanwhile (docs/BRIDGE.md, "Threads, the GIL and the two
connections"). The collector is the interpreter's, not one bridge's: the policy is set while any bridge
runs in this process and restored when the last one stops (tests run several in one process).
"""

from __future__ import annotations

import gc
import threading

# With gc_collect_every_s = 0 (automatic collection): far fewer young collections than the default 700.
GC_THRESHOLDS = (50_000, 20, 100)


class GcPolicy:
    _lock = threading.Lock()
    _users = 0
    _saved: tuple[bool, tuple[int, int, int]] | None = None

    @classmethod
    def enter(cls, freeze: bool, manual: bool) -> None:
        """``freeze``: move what exists now out of the collector's view; ``manual``: automatic collection
        off (the caller collects on its own schedule)."""
        with cls._lock:
            if cls._users == 0:
                cls._saved = (gc.isenabled(), gc.get_threshold())
            cls._users += 1
            if freeze:
                gc.collect()
                gc.freeze()
            if manual:
                gc.disable()
            else:
                gc.set_threshold(*GC_THRESHOLDS)

    @classmethod
    def leave(cls) -> None:
        with cls._lock:
            cls._users -= 1
            if cls._users == 0 and cls._saved is not None:
                enabled, thresholds = cls._saved
                gc.set_threshold(*thresholds)
                if enabled:
                    gc.enable()
