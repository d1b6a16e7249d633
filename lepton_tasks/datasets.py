"""Dataset sources a task spec can name: an image folder, windows in NPZ or CSV, or a callable.

Each returns :class:`Loaded`: raw samples as a source would produce them (HxWx3 uint8 BGR frames
for images, (channels, time) float32 windows), class indexes, optional ``info`` from a callable
(``drift``: a boolean mask of the samples of a drift phase, replayed last), and counts of what
was skipped and why. Nothing here
downloads: data comes from files next to the spec or from installed packages.
"""

from __future__ import annotations

import csv
import importlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lepton_tasks.spec import DatasetCfg, TaskSpecError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jp2"}


@dataclass
class Loaded:
    x: np.ndarray
    y: np.ndarray  # int64 class indexes
    info: dict[str, Any] = field(default_factory=dict)
    skipped: Counter = field(default_factory=Counter)  # reason -> count


def resolve(call: str) -> Callable[..., Any]:
    """``module:callable`` -> the object; TaskSpecError (naming it) when it cannot be imported."""
    mod, _, attr = call.partition(":")
    try:
        obj = getattr(importlib.import_module(mod), attr)
    except ImportError as exc:
        raise TaskSpecError(f"{call}: cannot import {mod!r}: {exc}") from None
    except AttributeError:
        raise TaskSpecError(f"{call}: module {mod!r} has no {attr!r}") from None
    if not callable(obj):
        raise TaskSpecError(f"{call}: is not callable")
    return obj


def _labels(y: Any, classes: Sequence[str], where: str) -> np.ndarray:
    y = np.asarray(y)
    if y.dtype.kind in "iu":
        if y.size and (y.min() < 0 or y.max() >= len(classes)):
            found = np.unique(y)
            shown = ", ".join(str(int(v)) for v in found[:8]) + (f", ... ({len(found)} values)" if len(found) > 8 else "")
            raise TaskSpecError(
                f"{where}: integer labels are read as class indexes 0..{len(classes) - 1} (classes "
                f"{list(classes)}), but the labels hold {shown}; renumber them, or store class names instead "
                f"(strings equal to the class names)")
        return y.astype(np.int64)
    index = {c: i for i, c in enumerate(classes)}
    names = [str(v) for v in y.tolist()]
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise TaskSpecError(f"{where}: labels {unknown[:5]} are not among the classes {list(classes)}")
    return np.array([index[n] for n in names], np.int64)


def load(cfg: DatasetCfg, classes: Sequence[str], base: Path) -> Loaded:
    path = (base / cfg.path) if cfg.path else None
    if cfg.source == "callable":
        assert cfg.call is not None
        out = resolve(cfg.call)(**cfg.args)
        if not isinstance(out, tuple) or len(out) not in (2, 3):
            raise TaskSpecError(f"dataset.callable: {cfg.call} must return (x, y) or (x, y, info)")
        x = out[0] if hasattr(out[0], "__getitem__") and hasattr(out[0], "shape") else np.asarray(out[0])
        y = _labels(out[1], classes, "dataset.callable")
        info = dict(out[2]) if len(out) == 3 else {}
        if len(x) != len(y):
            raise TaskSpecError(f"dataset.callable: {len(x)} samples but {len(y)} labels")
        return Loaded(x, y, info)
    assert path is not None
    if not path.exists():
        raise TaskSpecError(f"dataset.path: {path} does not exist")
    if cfg.source == "folder":
        return _folder(path, classes, cfg.frame_size)
    if cfg.source == "npz":
        return _npz(path, classes, cfg)
    return _csv(path, classes, cfg)


def _folder(root: Path, classes: Sequence[str], frame_size: list[int] | None) -> Loaded:
    """One sub-folder per class, any image format OpenCV reads; unreadable files counted and skipped."""
    import cv2

    if not root.is_dir():
        raise TaskSpecError(f"dataset.path: {root} is not a folder")
    missing = [c for c in classes if not (root / c).is_dir()]
    if missing:
        raise TaskSpecError(f"dataset.path: {root} has no sub-folder for classes {missing}")
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: Counter = Counter()
    for i, c in enumerate(classes):
        for p in sorted((root / c).iterdir()):
            if not p.is_file() or p.name.startswith("."):
                continue
            img = cv2.imread(str(p), cv2.IMREAD_COLOR) if p.suffix.lower() in IMAGE_SUFFIXES else None
            if img is None:
                if not skipped["unreadable"]:
                    first = p
                skipped["unreadable"] += 1
                log.debug("dataset: skipping %s (not an image OpenCV can read)", p)
                continue
            images.append(img)
            labels.append(i)
    if skipped["unreadable"]:
        log.warning("dataset %s: skipped %d files OpenCV cannot read (the first: %s)", root, skipped["unreadable"],
                    first)
    empty = [c for i, c in enumerate(classes) if i not in labels]
    if empty:
        raise TaskSpecError(f"dataset.path: no readable image for classes {empty} under {root}")
    if frame_size is None:
        (h, w), _ = Counter(im.shape[:2] for im in images).most_common(1)[0]
    else:
        w, h = frame_size
    out = np.empty((len(images), h, w, 3), np.uint8)
    for k, im in enumerate(images):
        if im.shape[:2] != (h, w):
            skipped["resized"] += 1
            im = cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
        out[k] = im
    return Loaded(out, np.array(labels, np.int64), skipped=skipped)


def _windows(x: np.ndarray, channels: int, where: str) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim == 2:
        if x.shape[1] % channels:
            raise TaskSpecError(f"{where}: {x.shape[1]} values per window do not split into {channels} channels")
        x = x.reshape(len(x), channels, -1)
    if x.ndim != 3:
        raise TaskSpecError(f"{where}: windows must be (N, T) or (N, channels, T), got {x.shape}")
    if not np.isfinite(x).all():
        raise TaskSpecError(f"{where}: windows hold NaN or Inf (fill or drop them first)")
    return x


def _npz(path: Path, classes: Sequence[str], cfg: DatasetCfg) -> Loaded:
    try:
        with np.load(path, allow_pickle=False) as z:
            if cfg.x_key not in z or cfg.y_key not in z:
                raise TaskSpecError(f"dataset.path: {path} lacks arrays {cfg.x_key!r} and {cfg.y_key!r} "
                                    f"(has {sorted(z.files)})")
            x, y = z[cfg.x_key], z[cfg.y_key]
    except (OSError, ValueError) as exc:
        raise TaskSpecError(f"dataset.path: {path} is not a readable .npz: {exc}") from None
    if len(x) != len(y):
        raise TaskSpecError(f"dataset.path: {len(x)} samples but {len(y)} labels in {path}")
    return Loaded(_windows(x, cfg.channels, "dataset.path"), _labels(y, classes, "dataset.path"))


def _csv(path: Path, classes: Sequence[str], cfg: DatasetCfg) -> Loaded:
    """One window per row: a label column and the values (channel-major when several channels)."""
    with open(path, newline="") as f:
        rows = [r for r in csv.reader(f) if r]
    if not rows:
        raise TaskSpecError(f"dataset.path: {path} is empty")
    header = rows[0]
    if cfg.label_column in header:
        col, rows = header.index(cfg.label_column), rows[1:]
    elif cfg.label_column.isdigit():
        col = int(cfg.label_column)
    else:
        raise TaskSpecError(f"dataset.label_column: {cfg.label_column!r} is not a column of {path}")
    labels, values, skipped = [], [], Counter()
    for r in rows:
        try:
            values.append([float(v) for i, v in enumerate(r) if i != col])
            labels.append(r[col].strip())
        except (ValueError, IndexError):
            skipped["unparsable_row"] += 1
    if not values or len({len(v) for v in values}) != 1:
        raise TaskSpecError(f"dataset.path: {path} rows must all hold the same number of values")
    y = np.array([int(v) for v in labels]) if all(v.lstrip("-").isdigit() for v in labels) else np.array(labels)
    return Loaded(_windows(np.array(values), cfg.channels, "dataset.path"), _labels(y, classes, "dataset.path"),
                  skipped=skipped)
