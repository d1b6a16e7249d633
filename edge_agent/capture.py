"""The capture thread's hand-off: a bounded queue that drops the oldest frame (live) or blocks (lossless)."""

from __future__ import annotations

import queue
import threading

from shared.process.bounded import DropOldestQueue

EOF_MARK = object()  # the source ended


class FrameQueue:
    def __init__(self, maxsize: int, lossless: bool, stop: threading.Event) -> None:
        self.lossless = lossless
        self._stop = stop
        self._drop: DropOldestQueue[object] | None = None if lossless else DropOldestQueue(maxsize)
        self._block: queue.Queue[object] | None = queue.Queue(maxsize) if lossless else None

    @property
    def dropped(self) -> int:
        return self._drop.dropped if self._drop is not None else 0

    def put(self, item: object) -> bool:
        """False only when stopped while waiting (lossless mode)."""
        if self._drop is not None:
            self._drop.put(item)
            return True
        assert self._block is not None
        while not self._stop.is_set():
            try:
                self._block.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def put_eof(self) -> None:
        # The end mark must not be dropped, nor block forever on a full lossless queue at shutdown.
        if self._drop is not None:
            self._drop.put(EOF_MARK)
        else:
            self.put(EOF_MARK)

    def get(self, timeout: float) -> object | None:
        if self._drop is not None:
            return self._drop.get(timeout)
        assert self._block is not None
        try:
            return self._block.get(timeout=timeout)
        except queue.Empty:
            return None

    def __len__(self) -> int:
        return len(self._drop) if self._drop is not None else self._block.qsize()  # type: ignore[union-attr]
