"""A task at run time: its spec, where it was found, its data split, and the input contract.

The cloud worker trains from ``dataset()``; simulated agents replay its stream; the input spec
and the classes go into every signed manifest, which is all a real agent needs (docs/TASKS.md).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lepton_tasks import datasets
from lepton_tasks.spec import TaskSpec, TaskSpecError
from shared.model import preprocess
from shared.protocol.schemas import CloudInput, DecisionDefaults, InputSpec, TensorSpec

RAW = {"image": "HxWx3 uint8 BGR frame (cv2.VideoCapture order)", "window": "(channels, time) float32 sensor window"}


@dataclass(frozen=True)
class Dataset:
    raw: np.ndarray  # (N, ...) raw samples as a source produces them
    y: np.ndarray  # (N,) int64 labels
    seed: np.ndarray  # indices
    holdout: np.ndarray
    stream: np.ndarray  # in replay order
    drift_at: int | None = None  # position in ``stream`` where a drift phase starts
    skipped: dict[str, int] = field(default_factory=dict)


class Task:
    def __init__(self, spec: TaskSpec, origin: str, base: Path) -> None:
        self.spec = spec
        self.origin = origin  # "shipped", "path", or "entry point <dist>"
        self.base = base  # paths in the spec are relative to it
        self._lock = threading.Lock()
        self._data: Dataset | None = None
        self._cloud_shape: tuple[int, ...] | None = None

    # ---- what every role reads -------------------------------------------------
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def problem(self) -> str:
        return self.spec.problem

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.spec.classes)

    @property
    def alert_classes(self) -> tuple[str, ...]:
        return tuple(self.spec.alert_classes)

    @property
    def steps(self) -> tuple[dict[str, Any], ...]:
        return tuple(self.spec.preprocess)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.spec.input.shape)

    @property
    def layout(self) -> str:
        return self.spec.input.layout

    def raw_description(self) -> str:
        return self.spec.input.raw or RAW[self.kind]

    def input_spec(self) -> InputSpec:
        return InputSpec(tensor=TensorSpec(name="x", dtype="float32", shape=["batch", *self.input_shape]),
                         layout=self.layout, preprocess={"steps": [dict(s) for s in self.steps],
                                                         "raw": self.raw_description()},
                         classes=list(self.classes), alert_classes=list(self.alert_classes))

    # ---- the cloud's contract: the raw sample, its own preprocessing ---------------------
    @property
    def cloud_steps(self) -> tuple[dict[str, Any], ...]:
        c = self.spec.cloud
        if c.preprocess is not None:
            return tuple(c.preprocess)
        if self.kind == "window":  # full length: the cloud has the compute the edge resampled away for
            return tuple(s for s in self.steps if s.get("op") != "resample")
        return tuple({**s, "size": [2 * int(v) for v in s["size"]]} if s.get("op") in ("resize", "letterbox")
                     else s for s in self.steps)

    @property
    def cloud_encoding(self) -> str:
        return self.spec.cloud.encoding or ("jpeg" if self.kind == "image" else "float16")

    @property
    def cloud_uplink(self) -> str:
        return self.spec.cloud.uplink or ("escalations" if self.kind == "image" else "all")

    def cloud_pipeline(self) -> preprocess.Pipeline:
        return preprocess.build(self.cloud_steps)

    @property
    def cloud_input_shape(self) -> tuple[int, ...]:
        """The spec's, or what the cloud steps make of the data's first sample (needs the data)."""
        if self.spec.cloud.shape is not None:
            return tuple(self.spec.cloud.shape)
        if self._cloud_shape is None:
            first = self.dataset().raw[0]
            self._cloud_shape = tuple(int(d) for d in self.cloud_pipeline()(np.asarray(first)).shape[1:])
        return self._cloud_shape

    def cloud_input(self) -> CloudInput:
        c = self.spec.cloud
        return CloudInput(encoding=self.cloud_encoding, quality=c.quality, uplink=self.cloud_uplink,  # type: ignore
                          preprocess={"steps": [dict(s) for s in self.cloud_steps]},
                          shape=list(self.cloud_input_shape))

    def preprocess_cloud_all(self, raw: np.ndarray) -> np.ndarray:
        """The cloud pipeline over a stack of raw samples -> (N, *cloud_input_shape) float32."""
        run = self.cloud_pipeline()
        if not len(raw):
            return np.zeros((0, *self.cloud_input_shape), np.float32)
        return np.concatenate([run(r) for r in raw], axis=0)

    def decision_defaults(self) -> DecisionDefaults:
        d = self.spec.decision
        return DecisionDefaults(policy=d.policy, threshold=d.threshold, budget=d.budget, raw_every=d.raw_every)

    def pipeline(self) -> preprocess.Pipeline:
        return preprocess.build(self.steps)

    def preprocess_all(self, raw: np.ndarray) -> np.ndarray:
        """Run the pipeline over a stack of raw samples -> (N, *input_shape) float32."""
        run = self.pipeline()
        if not len(raw):
            return np.zeros((0, *self.input_shape), np.float32)
        return np.concatenate([run(r) for r in raw], axis=0)

    # ---- data ---------------------------------------------------------------------
    def dataset(self) -> Dataset:
        with self._lock:
            if self._data is None:
                self._data = split(self.spec, datasets.load(self.spec.dataset, self.classes, self.base))
            return self._data

    def __repr__(self) -> str:
        return f"Task({self.name!r}, {self.kind}, {len(self.classes)} classes, from {self.origin})"


def _count(size: float, n: int) -> int:
    return int(size) if size >= 1 else int(round(size * n))


def _stratified(idx: np.ndarray, y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` of ``idx``, every class in proportion and at least one of each that has any."""
    classes = np.unique(y[idx])
    take: list[np.ndarray] = []
    for c in classes:
        members = idx[y[idx] == c]
        k = max(1, int(round(n * len(members) / len(idx))))
        take.append(rng.permutation(members)[:k])
    out = np.concatenate(take)
    if len(out) > n:  # rounding up every class may overshoot: trim the biggest classes first
        out = rng.permutation(out)
        keep: list[int] = []
        per = {c: 0 for c in classes}
        for i in out:
            if per[y[i]] == 0 or len(keep) < n:
                keep.append(int(i))
                per[y[i]] += 1
        out = np.array(keep[:max(n, len(classes))])
    return np.sort(out)


def split(spec: TaskSpec, data: datasets.Loaded) -> Dataset:
    """Deterministic seed / holdout / stream from the spec's sizes (counts or fractions).

    A dataset may mark a drift phase (``info["drift"]``, a boolean mask): seed and holdout come from
    the samples before it, and the stream replays the rest of those, then the drift samples."""
    n = len(data.y)
    rng = np.random.default_rng(spec.split.shuffle_seed)
    drift = np.asarray(data.info.get("drift", np.zeros(n, bool)), bool)
    if drift.shape != (n,):
        raise TaskSpecError(f"dataset: info['drift'] must be a boolean mask of {n} samples")
    pool = rng.permutation(np.flatnonzero(~drift))
    n_seed, n_hold = _count(spec.split.seed, len(pool)), _count(spec.split.holdout, len(pool))
    if n_seed < 1 or n_hold < 1 or n_seed + n_hold >= len(pool):
        raise TaskSpecError(f"split: seed {n_seed} + holdout {n_hold} leave no stream of {len(pool)} samples")
    if spec.split.stratify:
        seed = _stratified(pool, data.y, n_seed, rng)
        rest = np.setdiff1d(pool, seed)
        holdout = _stratified(rest, data.y, n_hold, rng)
        rest = rng.permutation(np.setdiff1d(rest, holdout))
    else:
        seed, holdout, rest = np.sort(pool[:n_seed]), np.sort(pool[n_seed:n_seed + n_hold]), pool[n_seed + n_hold:]
    if spec.split.stream is not None:
        rest = rest[: _count(spec.split.stream, len(pool))]
    late = rng.permutation(np.flatnonzero(drift))
    stream = np.concatenate([rest, late]).astype(np.int64)
    missing = [spec.classes[c] for c in range(len(spec.classes)) if not (data.y[seed] == c).any()]
    if missing:
        raise TaskSpecError(f"split: the seed set has no sample of classes {missing}")
    return Dataset(data.x, data.y, seed, holdout, stream, len(rest) if len(late) else None, dict(data.skipped))


# What the live loop (agent, bridge, worker) serves. Anomaly and forecast tasks have their detectors,
# forecasters and benches (docs/TASKS.md) but not yet their manifests, decisions and learners: run
# live, they would be trained as classifiers of their ground truth, so they are refused by name.
LIVE_PROBLEMS = ("classify",)


def require_live(task: Task) -> Task:
    """``task`` if the live loop serves its problem; else one TaskSpecError line that says what to run."""
    if task.problem not in LIVE_PROBLEMS:
        bench = {"anomaly": "bench/bench_anomaly.py", "forecast": "bench/bench_forecast.py"}.get(task.problem, "")
        raise TaskSpecError(f"problem: {task.name} is an {task.problem} task, which the live system does not serve "
                            f"yet (its models are measured offline: {bench}; docs/TASKS.md)")
    return task
