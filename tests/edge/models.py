"""Tiny real ONNX models for the agent's tests, built with onnx.helper (no torch, no cloud worker).

Flatten -> Gemm -> Relu (= ``feat``) -> Gemm -> Softmax (= ``probs``), per shared/model/model_contract.py.
The first layer is a fixed random projection; the head is ridge regression on one-hot
targets over the task's seed split, so predictions mean something (digits: ~80% holdout).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from lepton_tasks import load_task
from shared.model.model_contract import encode_reference
from shared.protocol import schemas
from shared.protocol.topics import Topics
from shared.security.signing import sign_manifest


@dataclass(frozen=True)
class Weights:
    w1: np.ndarray
    b1: np.ndarray
    w2: np.ndarray
    b2: np.ndarray


def fit(task_name: str, *, hidden: int = 64, seed: int = 0, ridge: float = 1e-1, temperature: float = 8.0,
        split: str = "seed") -> Weights:
    task = load_task(task_name)
    ds = task.dataset()
    idx = getattr(ds, split)
    x = task.preprocess_all(ds.raw[idx]).reshape(len(idx), -1).astype(np.float64)
    rng = np.random.default_rng(seed)
    d = x.shape[1]
    w1 = rng.normal(0, 1 / np.sqrt(d), size=(d, hidden))
    b1 = rng.normal(0, 0.1, size=hidden)
    h = np.maximum(x @ w1 + b1, 0)
    h1 = np.hstack([h, np.ones((len(h), 1))])
    y = np.eye(len(task.classes))[ds.y[idx]]
    sol = np.linalg.solve(h1.T @ h1 + ridge * np.eye(h1.shape[1]), h1.T @ y)
    return Weights(w1.astype(np.float32), b1.astype(np.float32), (sol[:-1] * temperature).astype(np.float32),
                   (sol[-1] * temperature).astype(np.float32))


def onnx_bytes(task_name: str, w: Weights) -> bytes:
    task = load_task(task_name)
    c = len(task.classes)
    hidden = w.w1.shape[1]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", *task.input_shape])
    feat = helper.make_tensor_value_info("feat", TensorProto.FLOAT, ["batch", hidden])
    probs = helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", c])
    inits = [numpy_helper.from_array(a, n) for a, n in ((w.w1, "w1"), (w.b1, "b1"), (w.w2, "w2"), (w.b2, "b2"))]
    nodes = [
        helper.make_node("Flatten", ["x"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "w1", "b1"], ["h"]),
        helper.make_node("Relu", ["h"], ["feat"]),
        helper.make_node("Gemm", ["feat", "w2", "b2"], ["logits"]),
        helper.make_node("Softmax", ["logits"], ["probs"], axis=-1),
    ]
    graph = helper.make_graph(nodes, f"lepton-test-{task_name}", [x], [feat, probs], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="lepton-tests")
    model.ir_version = 9
    onnx.checker.check_model(model)
    return model.SerializeToString()


def forward(task_name: str, w: Weights, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same computation in numpy (reference outputs, accuracy checks)."""
    flat = x.reshape(len(x), -1)
    feat = np.maximum(flat @ w.w1 + w.b1, 0)
    logits = feat @ w.w2 + w.b2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return feat.astype(np.float32), (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


@dataclass(frozen=True)
class Release:
    version: int
    onnx: bytes
    manifest: schemas.Manifest
    wire: bytes  # what goes on the manifest topic (signed when a key was given)


def release(topics: Topics, task_name: str, version: int, *, seed: int | None = None, key=None,
            expires_in: float = 86400.0, created: float | None = None, onnx_blob: bytes | None = None,
            size: int | None = None, sha256: str | None = None, reference_shift: float = 0.0,
            tolerance: float = 1e-4, task_field: str | None = None, hidden: int = 64,
            cloud: schemas.CloudInput | None = None, decision: schemas.DecisionDefaults | None = None) -> Release:
    """A model version with its manifest; keyword knobs produce each kind of bad release."""
    task = load_task(task_name)
    w = fit(task_name, seed=version if seed is None else seed, hidden=hidden)
    blob = onnx_blob if onnx_blob is not None else onnx_bytes(task_name, w)
    ds = task.dataset()
    xr = task.preprocess_all(ds.raw[ds.holdout[:4]])
    feat, probs = forward(task_name, w, xr)
    created = time.time() if created is None else created
    m = schemas.Manifest(
        task=task_field or task_name, version=version, parent=version - 1 if version > 1 else None,
        sha256=sha256 or hashlib.sha256(blob).hexdigest(), size=size or len(blob),
        artifact=str(topics.artifact(task_name, version)), input=task.input_spec(),
        outputs=[schemas.TensorSpec(name="feat", dtype="float32", shape=["batch", w.w1.shape[1]]),
                 schemas.TensorSpec(name="probs", dtype="float32", shape=["batch", len(task.classes)])],
        metrics={"holdout_acc": accuracy(task_name, w)}, reference=encode_reference(xr, feat, probs + reference_shift),
        cloud=cloud, decision=decision,
        tolerance=tolerance, created=created, expires=created + expires_in)
    wire = sign_manifest(m, key) if key is not None else schemas.dumps(m)
    return Release(version, blob, m, wire)


def accuracy(task_name: str, w: Weights, split: str = "holdout") -> float:
    task = load_task(task_name)
    ds = task.dataset()
    idx = getattr(ds, split)
    _, probs = forward(task_name, w, task.preprocess_all(ds.raw[idx]))
    return float((probs.argmax(1) == ds.y[idx]).mean())


def manifest_json(rel: Release) -> dict:
    return json.loads(rel.wire)


def write_files(rel: Release, folder) -> dict:
    """The release as files, for the agent's initial_model / initial_manifest settings."""
    from pathlib import Path

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"v{rel.version}.onnx").write_bytes(rel.onnx)
    (folder / f"v{rel.version}.json").write_bytes(rel.wire)
    return {"initial_model": str(folder / f"v{rel.version}.onnx"),
            "initial_manifest": str(folder / f"v{rel.version}.json")}
