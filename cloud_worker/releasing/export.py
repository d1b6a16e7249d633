"""Torch edge model -> one self-contained ONNX file, checked, then a signed manifest.

Every export is verified before anything is published: ``onnx.checker``, the graph's
names against the model contract (``feat`` and ``probs``; a model whose ``outputs`` attribute says
otherwise, such as an anomaly task's ``feat`` and ``score``, is held to those names), and onnxruntime run on real reference inputs with
max |torch - onnxruntime| below the parity tolerance. Any failure raises ExportError. A stopping
worker is heard between the steps (cloud_worker/models/stopcheck.py: Interrupted).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_worker.models.nets import EdgeNet
from cloud_worker.models.stopcheck import check
from lepton_tasks import Task
from shared.model import model_contract as mc
from shared.protocol.schemas import Manifest, TensorSpec
from shared.protocol.topics import Topics
from shared.security.signing import sign_manifest, verify_manifest_obj


class ExportError(RuntimeError):
    """The exported graph failed a check; nothing may be published."""


@dataclass(frozen=True)
class Exported:
    onnx: bytes
    reference: str  # base64 container for the manifest
    parity: float  # max |torch - ort| seen on the reference inputs
    outputs: list[TensorSpec]


def output_names(model: torch.nn.Module) -> tuple[str, str]:
    """The graph's two outputs: the contract's, or the model's own ``outputs`` (anomaly: feat, score)."""
    return tuple(getattr(model, "outputs", mc.OUTPUTS))  # type: ignore[return-value]


def to_onnx(model: EdgeNet, input_shape: tuple[int, ...], opset: int = 17) -> bytes:
    model = model.to("cpu").eval()
    names = output_names(model)
    dummy = torch.zeros((1, *input_shape), dtype=torch.float32)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # dynamo=False: the legacy exporter writes one self-contained file in ~16 ms; torch's dynamo
        # exporter (needs onnxscript) took ~0.8 s (3.7 s cold) and put the weights in a separate
        # .onnx.data file (digits EdgeNet, torch 2.13 CPU, 2 vCPU CI machine, measured 2026-12-01).
        torch.onnx.export(model, (dummy,), buf, input_names=[mc.INPUT], output_names=list(names),
                          dynamic_axes={mc.INPUT: {0: "batch"}, **{n: {0: "batch"} for n in names}},
                          opset_version=opset, dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def ort_session(onnx_bytes: bytes, threads: int = 1):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, sess_options=so, providers=["CPUExecutionProvider"])


def check_onnx(onnx_bytes: bytes, model: EdgeNet, x_ref: np.ndarray, tol: float) -> tuple[np.ndarray, np.ndarray,
                                                                                          float]:
    """Checker + contract + parity. Returns torch's (feat, probs) on x_ref and the max diff."""
    import onnx

    check()
    try:
        proto = onnx.load_from_string(onnx_bytes)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises several unrelated types for a bad graph
        raise ExportError(f"onnx.checker rejected the graph: {str(exc)[:300]}") from None
    ins = [i.name for i in proto.graph.input]
    outs = [o.name for o in proto.graph.output]
    names = list(output_names(model))
    if ins != [mc.INPUT] or outs != names:
        raise ExportError(f"graph has inputs {ins} and outputs {outs}; contract wants ['x'] and {names}")
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer):
        raise ExportError("graph references external data; the artifact must be one self-contained file")
    check()
    with torch.no_grad():
        feat_t, probs_t = (t.numpy() for t in model.to("cpu").eval()(torch.as_tensor(x_ref)))
    check()
    try:
        feat_o, probs_o = ort_session(onnx_bytes).run(names, {mc.INPUT: x_ref})
    except Exception as exc:
        raise ExportError(f"onnxruntime could not run the graph: {str(exc)[:300]}") from None
    diff = float(max(np.abs(feat_t - feat_o).max(), np.abs(probs_t - probs_o).max()))
    if not diff <= tol:
        raise ExportError(f"ONNX parity failed: max |torch - onnxruntime| = {diff:.3g} > {tol:g}")
    return feat_t, probs_t, diff


def export(model: EdgeNet, task: Task, x_ref: np.ndarray, *, opset: int, parity_tolerance: float) -> Exported:
    x_ref = np.ascontiguousarray(x_ref, dtype=np.float32)
    check()
    data = to_onnx(model, task.input_shape, opset)
    feat, probs, diff = check_onnx(data, model, x_ref, parity_tolerance)
    outputs = [TensorSpec(name=mc.OUTPUT_FEAT, dtype="float32", shape=["batch", int(feat.shape[1])]),
               TensorSpec(name=mc.OUTPUT_PROBS, dtype="float32", shape=["batch", int(probs.shape[1])])]
    return Exported(data, mc.encode_reference(x_ref, feat, probs), diff, outputs)


def build_manifest(task: Task, topics: Topics, version: int, parent: int | None, ex: Exported,
                   metrics: dict[str, float], *, tolerance: float, ttl_s: float, now: float | None = None) -> Manifest:
    created = time.time() if now is None else now
    return Manifest(task=task.name, version=version, parent=parent, sha256=hashlib.sha256(ex.onnx).hexdigest(),
                    size=len(ex.onnx), artifact=str(topics.artifact(task.name, version)), input=task.input_spec(),
                    outputs=ex.outputs, metrics={k: float(v) for k, v in metrics.items()},
                    decision=task.decision_defaults(), cloud=task.cloud_input(), reference=ex.reference,
                    tolerance=tolerance, created=created, expires=created + ttl_s)


def sign(manifest: Manifest, private: Ed25519PrivateKey, public: Ed25519PublicKey | None = None) -> bytes:
    raw = sign_manifest(manifest, private)
    verify_manifest_obj(json.loads(raw), public or private.public_key())  # fail here, not on a thousand agents
    return raw
