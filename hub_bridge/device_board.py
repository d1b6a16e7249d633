"""What each device last said about itself (telemetry and status), for per-device metrics.

Bounded: past ``max_devices`` a new device gets no entry, and the devices so left out are counted
(each once, while at most ``10 * max_devices`` names are remembered for that; beyond, every refused
telemetry message of an unremembered device counts again). A device whose retained status is
cleared (decommissioned) leaves the board and frees its place. A device's model versions are kept for
at most ``MAX_TASKS`` tasks (the first by name): a device cannot mint series by naming tasks.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

MAX_TASKS = 16


@dataclass
class DeviceEntry:
    fps: float = 0.0
    escalation_ratio: float = 0.0
    outbox_depth: float = 0.0
    models: dict[str, int] = field(default_factory=dict)  # task -> version serving
    online: bool = False


class DeviceBoard:
    def __init__(self, max_devices: int) -> None:
        self.max_devices = max_devices
        self._lock = threading.Lock()
        self._devices: dict[str, DeviceEntry] = {}
        self._left_out: set[str] = set()
        self.left_out = 0  # devices refused an entry (see the module doc)

    def _entry(self, device: str) -> DeviceEntry | None:
        e = self._devices.get(device)
        if e is not None:
            return e
        if len(self._devices) >= self.max_devices:
            if device not in self._left_out:
                self.left_out += 1
                if len(self._left_out) < 10 * self.max_devices:
                    self._left_out.add(device)
            return None
        e = self._devices[device] = DeviceEntry()
        return e

    def telemetry(self, device: str, fps: float, escalation_ratio: float, outbox_depth: float,
                  models: dict[str, int]) -> None:
        with self._lock:
            e = self._entry(device)
            if e is not None:
                e.fps, e.escalation_ratio, e.outbox_depth = fps, escalation_ratio, outbox_depth
                e.models = dict(sorted(models.items())[:MAX_TASKS])

    def status(self, device: str, online: bool) -> None:
        with self._lock:
            e = self._entry(device)
            if e is not None:
                e.online = online

    def forget(self, device: str) -> None:
        with self._lock:
            self._devices.pop(device, None)

    def snapshot(self) -> dict[str, DeviceEntry]:
        with self._lock:
            return {d: DeviceEntry(e.fps, e.escalation_ratio, e.outbox_depth, dict(e.models), e.online)
                    for d, e in self._devices.items()}
