"""The data half of ``lepton tasks check``: validate a spec, load its data, split it, preprocess a sample.

No model is built here (that needs the cloud extra: cloud_worker/releasing/spec_check.py), so a spec can be
checked on a machine with only the protocol installed. Every problem is one ``TaskSpecError`` line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lepton_tasks.registry import load_task
from lepton_tasks.spec import TaskSpecError
from lepton_tasks.task import Dataset, Task


@dataclass(frozen=True)
class Checked:
    """A task whose data loaded: its dataset, and a few seed samples raw and preprocessed for the edge."""

    task: Task
    data: Dataset
    raw: np.ndarray
    x: np.ndarray


def check_data(ref: str, out: Callable[[str], object] = print) -> Checked:
    """Load ``ref`` (a name or a spec path) and its data, say what was found; raises TaskSpecError."""
    task = load_task(ref)
    out(f"task {task.name} ({task.kind}) from {task.origin}: {task.base}")
    d = task.dataset()
    counts = Counter(int(v) for v in d.y)
    out(f"  data: {len(d.y)} samples, raw sample {tuple(d.raw[0].shape)} {d.raw[0].dtype}; per class: "
        + ", ".join(f"{c} {counts.get(i, 0)}" for i, c in enumerate(task.classes)))
    if d.skipped:
        out("  skipped: " + ", ".join(f"{n} {k}" for k, n in sorted(d.skipped.items())))
    out(f"  split: seed {len(d.seed)}, holdout {len(d.holdout)}, stream {len(d.stream)}"
        + (f" (drift phase from stream position {d.drift_at})" if d.drift_at is not None else ""))
    raw = d.raw[d.seed[:2]]
    x = task.preprocess_all(raw)
    if tuple(x.shape[1:]) != task.input_shape:
        raise TaskSpecError(f"input.shape: preprocessing makes {tuple(x.shape[1:])}, the spec says "
                            f"{task.input_shape}")
    out(f"  model input: {tuple(x.shape[1:])} float32 ({task.layout}), range [{x.min():.3g}, {x.max():.3g}]")
    return Checked(task, d, raw, x)
