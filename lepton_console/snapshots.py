"""The newest snapshot of each (device, stream, alert class), as the devices retain them on snapshot/.

Bounded: at most ``max_devices`` devices' worth, the device seen longest ago forgotten first, so a
fleet of many cameras cannot grow the console's memory without end.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass


@dataclass(frozen=True)
class Snapshot:
    device: str
    stream: str
    name: str
    jpeg: bytes
    ts: float  # when the console received it


class SnapshotShelf:
    def __init__(self, max_devices: int = 2000) -> None:
        self.max_devices = max_devices
        self._by_device: OrderedDict[str, dict[tuple[str, str], Snapshot]] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, device: str, stream: str, name: str, jpeg: bytes) -> None:
        with self._lock:
            shelf = self._by_device.setdefault(device, {})
            shelf[(stream, name)] = Snapshot(device, stream, name, jpeg, time.time())
            self._by_device.move_to_end(device)
            while len(self._by_device) > self.max_devices:
                self._by_device.popitem(last=False)

    def get(self, device: str, stream: str, name: str) -> Snapshot | None:
        with self._lock:
            return self._by_device.get(device, {}).get((stream, name))

    def of(self, device: str) -> list[Snapshot]:
        with self._lock:
            return sorted(self._by_device.get(device, {}).values(), key=lambda s: (s.stream, s.name))
