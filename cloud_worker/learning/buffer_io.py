"""The learning buffer on disk: feature rows and the set of rows learned from.

One ``buffer.npz`` per task in the registry, written atomically (raw samples are kept apart, in
``raw.sqlite``: cloud_worker/learning/rawstore.py). A restarted worker keeps what it learned from; a worker
acknowledges fused batches to the bridge only after both hold them (docs/PROTOCOL.md, Delivery
guarantee).
"""

from __future__ import annotations

import numpy as np

from cloud_worker.learning.buffer import BalancedStore, Row
from cloud_worker.learning.learned import LearnedSet
from cloud_worker.registry import Registry

STORES = ("f",)  # feature rows (buffers written before raw.sqlite also hold "r": model inputs, not read)


def to_arrays(features: BalancedStore, learned: LearnedSet) -> dict[str, np.ndarray]:
    arrays: dict[str, np.ndarray] = {}
    for name, store in zip(STORES, (features,), strict=True):
        rows = store.rows()
        arrays[f"{name}_device"] = np.array([r.key[0] for r in rows], dtype="<U48")
        arrays[f"{name}_sample"] = np.array([r.key[1] for r in rows], np.int64)
        arrays[f"{name}_label"] = np.array([r.label for r in rows], np.int64)
        arrays[f"{name}_weight"] = np.array([r.weight for r in rows], np.float32)
        arrays[f"{name}_pseudo"] = np.array([r.pseudo for r in rows], bool)
        arrays[f"{name}_version"] = np.array([r.version for r in rows], np.int64)
        arrays[f"{name}_data"] = np.stack([r.data for r in rows]) if rows else np.zeros((0, 0), np.float32)
    arrays.update(learned.to_arrays())
    return arrays


def save(registry: Registry, task: str, features: BalancedStore, learned: LearnedSet) -> None:
    registry.save_buffer(task, to_arrays(features, learned))


def load(registry: Registry, task: str, n_classes: int, features: BalancedStore, learned: LearnedSet) -> int:
    """Restore a saved buffer into the stores; returns the rows restored (0 when there is none)."""
    arrays = registry.load_buffer(task)
    if arrays is None:
        return 0
    learned.load_arrays(arrays)
    for name, store in zip(STORES, (features,), strict=True):
        for i in range(len(arrays[f"{name}_label"])):
            label = int(arrays[f"{name}_label"][i])
            if 0 <= label < n_classes:
                store.add(Row((str(arrays[f"{name}_device"][i]), int(arrays[f"{name}_sample"][i])), label,
                              float(arrays[f"{name}_weight"][i]), bool(arrays[f"{name}_pseudo"][i]),
                              np.array(arrays[f"{name}_data"][i], np.float32), int(arrays[f"{name}_version"][i])))
    return len(features)
