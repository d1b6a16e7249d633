"""What a worker has already learned from, so each row counts once across copies, restarts and replicas.

A feature row can reach a worker more than once: QoS 1 redelivers after a broker crash, a
bridge republishes a batch nobody acknowledged, and a restarted bridge fuses again what a device
sent again. A row is identified by (device, sample id): sample ids embed the device's boot, so
the key is unique per device across boots. It is new information when the key is unseen, or
when it now carries a label it did not carry before (a late or corrected label); anything else
is a copy and is skipped (counted). The set is bounded (oldest keys forgotten first) and is
saved with the replay buffer, so a restarted worker keeps it.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

Key = tuple[str, int]
_UNLABELLED = -1


class LearnedSet:
    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._labels: OrderedDict[Key, int] = OrderedDict()

    def admit(self, key: Key, label: int) -> bool:
        """True when this (row, label) adds information; records it."""
        label = label if label >= 0 else _UNLABELLED
        old = self._labels.get(key)
        if old is not None and (old == label or label == _UNLABELLED):
            return False
        self._labels[key] = label
        self._labels.move_to_end(key)
        while len(self._labels) > self.capacity:
            self._labels.popitem(last=False)
        return True

    def replace(self, key: Key, label: int) -> None:
        """A correction: ``label`` (-1: none) is now what this row carries, whatever it carried before."""
        self._labels[key] = label if label >= 0 else _UNLABELLED
        self._labels.move_to_end(key)
        while len(self._labels) > self.capacity:
            self._labels.popitem(last=False)

    def __len__(self) -> int:
        return len(self._labels)

    def to_arrays(self, prefix: str = "learned") -> dict[str, np.ndarray]:
        keys = list(self._labels)
        return {f"{prefix}_device": np.array([k[0] for k in keys], dtype="<U48"),
                f"{prefix}_sample": np.array([k[1] for k in keys], np.int64),
                f"{prefix}_label": np.array(list(self._labels.values()), np.int64)}

    def load_arrays(self, arrays: dict[str, np.ndarray], prefix: str = "learned") -> int:
        dev, sample, label = (arrays.get(f"{prefix}_{n}") for n in ("device", "sample", "label"))
        if dev is None or sample is None or label is None or not len(dev) == len(sample) == len(label):
            return 0
        for d, s, y in zip(dev.tolist(), sample.tolist(), label.tolist(), strict=True):
            self._labels[(str(d), int(s))] = int(y)
        while len(self._labels) > self.capacity:
            self._labels.popitem(last=False)
        return len(dev)
