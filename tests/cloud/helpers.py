"""Test helpers: real data through the real exported model, as the bridge and agents would send it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable

import numpy as np
import onnxruntime as ort

from lepton_tasks import load_task
from shared.protocol import rawsample
from shared.protocol.containers import FusedBatch, HardSample
from shared.protocol.rawsample import RawRows
from shared.protocol.schemas import Manifest, loads
from shared.transport.mqtt import Message


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


def raw_rows(task: str, idx: np.ndarray) -> RawRows:
    """The dataset samples ``idx`` as an agent sends them, per the task's cloud contract."""
    t = load_task(task)
    d = t.dataset()
    items = [rawsample.encode(d.raw[int(i)], t.cloud_encoding, t.spec.cloud.quality) for i in idx]
    return RawRows.jpeg(items) if t.cloud_encoding == "jpeg" else RawRows.tensor(np.stack(items))


def hard_sample(task: str, idx: np.ndarray, *, device: str = "cam-1", seq: int = 1,
                x: np.ndarray | None = None, raw: bool = True) -> HardSample:
    """An escalation as an agent sends it: the raw samples (per the cloud contract), no edge input;
    ``x`` gives an edge input instead (as agents did before cloud contracts)."""
    n = len(idx)
    c = len(load_task(task).classes)
    xs = np.zeros((n, 0), np.float16) if x is None else x.astype(np.float32)
    return HardSample(device=device, stream="main", task=task, boot=1, seq=seq, model_version=1,
                      sample=np.asarray(idx, np.int64), x=xs, feat=np.zeros((n, 64), np.float32),
                      scores=np.full((n, c), 1.0 / c, np.float32), ts=np.full(n, time.time()),
                      raw=raw_rows(task, np.asarray(idx)) if raw and x is None else None)


def prepare_for(task: str):
    """What a learner's ``prepare`` does: a raw sample -> (edge input, cloud input)."""
    t = load_task(task)
    edge, cloud = t.pipeline(), t.cloud_pipeline()

    def prepare(item: np.ndarray, wire: str) -> tuple[np.ndarray, np.ndarray]:
        sample = rawsample.decode(item, wire)
        return edge(sample)[0], cloud(sample)[0]

    return prepare


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


def answered(lr, task: str, idx: np.ndarray, *, device: str = "cam-1", labels: np.ndarray | None = None,
             conf: np.ndarray | None = None, version: int = 1, raw: bool = True) -> None:
    """What the answering thread hands a learner for escalations of samples ``idx`` (the cloud's own
    answers unless ``labels``/``conf`` say otherwise), as if agents had sent them with their samples."""
    keys = [(device, int(s)) for s in idx]
    n = len(keys)
    if not raw:
        lr.ingest_answered(keys, np.full(n, version), np.zeros(n, np.int64) if labels is None else labels,
                           np.full(n, 0.5) if conf is None else conf)
        return
    rows = raw_rows(task, np.asarray(idx))
    items = [(rows.item(i), rows.encoding) for i in range(n)]
    prepared = [lr.prepare(it, w) for it, w in items]
    ex = np.stack([p[0] for p in prepared])
    cx = np.stack([p[1] for p in prepared])
    probs = lr.cloud.predict(cx) if lr.cloud is not None else np.full((n, len(lr.task.classes)), 0.5)
    lr.ingest_answered(keys, np.full(n, version), probs.argmax(1) if labels is None else labels,
                       probs.max(1) if conf is None else conf, items, ex, cx)
