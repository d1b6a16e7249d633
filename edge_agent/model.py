"""One ONNX model with its preprocessing, built from artifact bytes + manifest, and checked.

``load_model`` builds the onnxruntime session, checks the graph against the model contract
(input ``x``, outputs ``feat`` and ``probs``), compiles the manifest's preprocessing steps,
warms up and runs the manifest's reference inputs, requiring every output within
tolerance. Any failure raises :class:`ModelRejected` with a stable ``reason``.
"""

from __future__ import annotations

import logging

import numpy as np
import onnxruntime as ort

from shared.model import model_contract, preprocess
from shared.protocol import codec
from shared.protocol.schemas import Manifest

log = logging.getLogger(__name__)


class ModelRejected(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class LoadedModel:
    """Immutable once built; the agent swaps whole instances, never fields."""

    def __init__(self, manifest: Manifest, session: ort.InferenceSession, pipeline: preprocess.Pipeline,
                 manifest_raw: bytes) -> None:
        self.manifest = manifest
        self.manifest_raw = manifest_raw
        self.version = manifest.version
        self.session = session
        self.pipeline = pipeline
        self.classes = tuple(manifest.input.classes)
        self.alert_classes = tuple(manifest.input.alert_classes)
        self._outputs = [model_contract.OUTPUT_FEAT, model_contract.OUTPUT_PROBS]

    def run(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        feat, probs = self.session.run(self._outputs, {model_contract.INPUT: x})
        return feat, probs


def session_options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Spinning threads burn the only core of a Pi while waiting for work.
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def load_model(onnx_bytes: bytes, manifest: Manifest, manifest_raw: bytes, *, threads: int = 1,
               expect_shape: tuple[int, ...] | None = None, probe: np.ndarray | None = None) -> LoadedModel:
    """Build and verify. ``expect_shape``: the task's input shape (no batch axis); ``probe``: a raw
    sample the source produced, to check the manifest's preprocessing yields that shape."""
    try:
        sess = ort.InferenceSession(onnx_bytes, sess_options=session_options(threads),
                                    providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for any bad graph
        raise ModelRejected("load_failed", f"onnxruntime could not load the model: {str(exc)[:300]}") from None
    inputs = {i.name: i for i in sess.get_inputs()}
    outputs = {o.name for o in sess.get_outputs()}
    if set(inputs) != {model_contract.INPUT} or not set(model_contract.OUTPUTS) <= outputs:
        raise ModelRejected("contract", f"graph has inputs {sorted(inputs)} and outputs {sorted(outputs)}; "
                                        f"expected input 'x' and outputs {list(model_contract.OUTPUTS)}")
    if expect_shape is not None:
        dims = inputs[model_contract.INPUT].shape[1:]
        if len(dims) != len(expect_shape) or any(isinstance(d, int) and d != e for d, e in zip(dims, expect_shape, strict=True)):
            raise ModelRejected("contract", f"model input dims {dims} do not match the task's {list(expect_shape)}")
    steps = manifest.input.preprocess.get("steps") if isinstance(manifest.input.preprocess, dict) else None
    try:
        if not isinstance(steps, list):
            raise preprocess.PreprocessError("input.preprocess has no 'steps' list")
        pipeline = preprocess.build(steps)
        if probe is not None:
            shape = pipeline(probe).shape[1:]
            if expect_shape is not None and tuple(shape) != tuple(expect_shape):
                raise preprocess.PreprocessError(f"preprocessing makes {tuple(shape)}, model wants {expect_shape}")
    except (preprocess.PreprocessError, KeyError, TypeError, ValueError) as exc:
        raise ModelRejected("bad_preprocess", str(exc)[:300]) from None
    model = LoadedModel(manifest, sess, pipeline, manifest_raw)
    check_reference(model)
    return model


def check_reference(model: LoadedModel) -> float:
    """Run the manifest's reference inputs; returns the max |diff|, raises if above tolerance."""
    m = model.manifest
    try:
        ref = model_contract.decode_reference(m.reference)
    except codec.CodecError as exc:
        raise ModelRejected("bad_reference", str(exc)) from None
    x = np.ascontiguousarray(ref.tensors[model_contract.INPUT], dtype=np.float32)
    try:
        model.run(x[:1])  # warm-up: first run allocates
        feat, probs = model.run(x)
    except Exception as exc:  # onnxruntime's errors are not a stable hierarchy
        raise ModelRejected("inference_failed", f"reference inputs failed: {str(exc)[:300]}") from None
    worst = 0.0
    for name, got in ((model_contract.OUTPUT_FEAT, feat), (model_contract.OUTPUT_PROBS, probs)):
        want = np.asarray(ref.tensors[name], dtype=np.float32)
        if want.shape != got.shape:
            raise ModelRejected("reference_mismatch", f"{name}: shape {got.shape}, reference {want.shape}")
        diff = float(np.max(np.abs(got - want))) if got.size else 0.0
        worst = max(worst, diff)
        if not diff <= m.tolerance:
            raise ModelRejected("reference_mismatch", f"{name}: max |diff| {diff:.3g} > tolerance {m.tolerance:g}")
    if probs.shape[-1] != len(m.input.classes):
        raise ModelRejected("contract", f"probs has {probs.shape[-1]} classes, manifest names {len(m.input.classes)}")
    return worst
