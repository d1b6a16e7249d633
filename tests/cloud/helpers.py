"""Test helpers: real data through the real exported model, as the bridge and agents would send it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from lepton_tasks import load_task
from shared.containers import FusedBatch, HardSample
from shared.mqtt import Message
from shared.schemas import Manifest, loads


def ort_run(onnx_bytes: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sess = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feat, probs = sess.run(["feat", "probs"], {"x": x.astype(np.float32)})
    return feat, probs


def stream_inputs(task: str, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = load_task(task)
    d = t.dataset()
    return t.preprocess_all(d.raw[idx]), d.y[idx]


def fused_batch(task: str, onnx_bytes: bytes, version: int, idx: np.ndarray, *, seq: int = 1,
                device: str = "cam-1", labels: np.ndarray | None = None, sample_base: int = 0) -> FusedBatch:
    """What the bridge would fuse: features from the deployed model, ground-truth labels."""
    x, y = stream_inputs(task, idx)
    feat, probs = ort_run(onnx_bytes, x)
    n = len(idx)
    return FusedBatch(task=task, bridge="hub-1", boot=1_700_000_000_000, seq=seq, devices=(device,), context_names=("hour",),
                      sample=(sample_base + np.asarray(idx)).astype(np.int64), device_idx=np.zeros(n, np.int32),
                      feat=feat.astype(np.float32), label=(y if labels is None else labels).astype(np.int64),
                      edge_label=probs.argmax(1).astype(np.int64), edge_conf=probs.max(1).astype(np.float32),
                      model_version=np.full(n, version, np.int32), ctx=np.zeros((n, 1), np.float32))


def hard_sample(task: str, idx: np.ndarray, *, device: str = "cam-1", seq: int = 1,
                x: np.ndarray | None = None) -> HardSample:
    xs, _ = stream_inputs(task, idx) if x is None else (x, None)
    n = len(xs)
    c = len(load_task(task).classes)
    return HardSample(device=device, stream="main", task=task, boot=1, seq=seq, model_version=1,
                      sample=np.asarray(idx, np.int64), x=xs.astype(np.float32), feat=np.zeros((n, 64), np.float32),
                      scores=np.full((n, c), 1.0 / c, np.float32), ts=np.full(n, time.time()))


class Collector:
    """Thread-safe list of received messages with a poll-until helper."""

    def __init__(self) -> None:
        self.items: list[Message] = []
        self._cv = threading.Condition()

    def __call__(self, msg: Message) -> None:
        with self._cv:
            self.items.append(msg)
            self._cv.notify_all()

    def wait_for(self, pred: Callable[[list[Message]], bool], timeout: float) -> bool:
        with self._cv:
            return self._cv.wait_for(lambda: pred(self.items), timeout)


def manifest_versions(items: list[Message]) -> list[int]:
    out = []
    for m in items:
        if m.payload:
            out.append(loads(m.payload, Manifest).version)
    return out


def manifest_obj(payload: bytes) -> dict:
    return json.loads(payload)
