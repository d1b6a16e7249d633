"""The tasks Lepton ships, defined once for agent, worker, bridge and demo.

A task names its classes, its raw sample form (what a source produces), the preprocessing
steps (shared/preprocess.py) and a real dataset that ships inside a pip package, split
deterministically into a small labelled *seed* (for bootstrap), a *holdout* (the gate,
never trained on) and a *stream* (what simulated devices replay).

- ``digits``: camera scenario. sklearn's 8x8 handwritten digits rendered as 64x64 BGR frames,
  so the agent runs the real camera path (video file -> cv2 -> preprocess -> ONNX).
- ``motions``: sensor scenario. sktime's BasicMotions, 6-axis smartwatch accelerometer and
  gyroscope windows (6 x 100), 4 activities.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from shared import preprocess
from shared.schemas import InputSpec, TensorSpec


@dataclass(frozen=True)
class Dataset:
    raw: np.ndarray  # (N, ...) raw samples as a source produces them
    y: np.ndarray  # (N,) int64 labels
    seed: np.ndarray  # indices
    holdout: np.ndarray
    stream: np.ndarray


@dataclass(frozen=True)
class TaskDef:
    name: str
    kind: Literal["image", "sensor"]
    classes: tuple[str, ...]
    alert_classes: tuple[str, ...]
    steps: tuple[dict, ...]
    input_shape: tuple[int, ...]  # one preprocessed sample, without the batch axis
    layout: str
    split: tuple[int, int]  # (seed size, holdout size); the rest is the stream
    _loader: Callable[[], tuple[np.ndarray, np.ndarray]] = field(repr=False, compare=False)

    def input_spec(self) -> InputSpec:
        return InputSpec(
            tensor=TensorSpec(name="x", dtype="float32", shape=["batch", *self.input_shape]),
            layout=self.layout,
            preprocess={"steps": [dict(s) for s in self.steps], "raw": self.raw_description()},
            classes=list(self.classes),
        )

    def raw_description(self) -> str:
        return ("HxWx3 uint8 BGR frame (cv2.VideoCapture order)" if self.kind == "image"
                else "(channels, time) float32 sensor window")

    def pipeline(self) -> preprocess.Pipeline:
        return preprocess.build(self.steps)

    def dataset(self) -> Dataset:
        return _dataset(self.name)

    def preprocess_all(self, raw: np.ndarray) -> np.ndarray:
        """Run the pipeline over a stack of raw samples -> (N, *input_shape) float32."""
        run = self.pipeline()
        return np.concatenate([run(r) for r in raw], axis=0) if len(raw) else np.zeros((0, *self.input_shape),
                                                                                        np.float32)


def render_digit(img8: np.ndarray, size: int = 64) -> np.ndarray:
    """An 8x8 digit (0..16) as the camera would see it: a size x size BGR uint8 frame."""
    import cv2

    g = np.clip(np.asarray(img8, dtype=np.float32) * (255.0 / 16.0), 0, 255).astype(np.uint8)
    big = cv2.resize(g, (size, size), interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(big, cv2.COLOR_GRAY2BGR)


def _load_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    d = load_digits()
    frames = np.stack([render_digit(im) for im in d.images])
    return frames, d.target.astype(np.int64)


MOTION_CLASSES = ("badminton", "running", "standing", "walking")


def _load_motions() -> tuple[np.ndarray, np.ndarray]:
    from sktime.datasets import load_basic_motions

    X, y = load_basic_motions(return_type="numpy3D")
    idx = {c: i for i, c in enumerate(MOTION_CLASSES)}
    return X.astype(np.float32), np.array([idx[str(v)] for v in y], dtype=np.int64)


TASKS: dict[str, TaskDef] = {
    "digits": TaskDef(
        name="digits", kind="image", classes=tuple(str(i) for i in range(10)), alert_classes=("0",),
        steps=({"op": "gray"}, {"op": "resize", "size": [8, 8], "interp": "area"},
               {"op": "scale", "mul": 1 / 255.0}, {"op": "chw"}),
        input_shape=(1, 8, 8), layout="NCHW", split=(120, 360), _loader=_load_digits),
    "motions": TaskDef(
        name="motions", kind="sensor", classes=MOTION_CLASSES, alert_classes=("running",),
        steps=({"op": "resample", "length": 64}, {"op": "scale", "mul": 0.25}, {"op": "batch"}),
        input_shape=(6, 64), layout="NCT", split=(16, 24), _loader=_load_motions),
}


def get_task(name: str) -> TaskDef:
    try:
        return TASKS[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {sorted(TASKS)}") from None


@functools.cache
def _dataset(name: str) -> Dataset:
    t = get_task(name)
    raw, y = t._loader()
    order = np.random.default_rng(0).permutation(len(y))
    n_seed, n_hold = t.split
    return Dataset(raw=raw, y=y, seed=np.sort(order[:n_seed]), holdout=np.sort(order[n_seed:n_seed + n_hold]),
                   stream=order[n_seed + n_hold:])
