"""ONNX export checks and manifest signatures fail loudly on tampering."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import onnx
import pytest
import torch

from cloud_worker.models import nets
from cloud_worker.registry import Registry, torch_load
from cloud_worker.releasing import export as ex
from lepton_tasks import load_task
from shared.model import model_contract as mc
from shared.security.signing import SignatureError, load_public, verify_manifest_obj

from .helpers import ort_run, stream_inputs


@pytest.fixture
def v1(template_registry):
    return Registry(template_registry).get("digits", 1)


def edge_v1(template_registry) -> nets.EdgeNet:
    t = load_task("digits")
    e = nets.build_edge(t)
    e.load_state_dict(torch_load(Registry(template_registry).state("digits", 1)))
    return e.eval()


def test_export_is_one_self_contained_graph_matching_the_contract(template_registry):
    t = load_task("digits")
    x, _ = stream_inputs("digits", np.arange(5))

    out = ex.export(edge_v1(template_registry), t, x, opset=17, parity_tolerance=1e-4)

    proto = onnx.load_from_string(out.onnx)
    assert [i.name for i in proto.graph.input] == ["x"]
    assert [o.name for o in proto.graph.output] == ["feat", "probs"]
    assert out.parity <= 1e-4
    feat, probs = ort_run(out.onnx, np.concatenate([x, x]))  # dynamic batch axis
    assert feat.shape == (10, nets.FEAT_DIM) and probs.shape == (10, 10)
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)


def test_window_task_exports_too():
    t = load_task("health")
    e = nets.build_edge(t).eval()
    x, _ = stream_inputs("health", np.arange(3))

    out = ex.export(e, t, x, opset=17, parity_tolerance=1e-4)

    assert ort_run(out.onnx, x)[1].shape == (3, len(t.classes))


def test_parity_check_fails_loudly_when_the_graph_was_tampered_with(template_registry):
    model = edge_v1(template_registry)
    x, _ = stream_inputs("digits", np.arange(4))
    proto = onnx.load_from_string(ex.to_onnx(model, (1, 8, 8)))
    w = max(proto.graph.initializer, key=lambda i: len(i.raw_data) if i.raw_data else 0)
    arr = onnx.numpy_helper.to_array(w).copy()
    arr *= 1.5
    w.CopyFrom(onnx.numpy_helper.from_array(arr, w.name))

    with pytest.raises(ex.ExportError, match="parity failed"):
        ex.check_onnx(proto.SerializeToString(), model, x, tol=1e-4)


def test_checker_refuses_a_corrupt_graph(template_registry, v1):
    model = edge_v1(template_registry)
    x, _ = stream_inputs("digits", np.arange(2))
    with pytest.raises(ex.ExportError):
        ex.check_onnx(v1.onnx[: len(v1.onnx) // 2], model, x, tol=1e-4)


def test_flipped_artifact_byte_is_caught_by_the_manifest_hash(v1):
    m = json.loads(v1.manifest_raw)
    data = bytearray(v1.onnx)
    data[len(data) // 2] ^= 0x01

    assert hashlib.sha256(bytes(data)).hexdigest() != m["sha256"]
    assert hashlib.sha256(v1.onnx).hexdigest() == m["sha256"] and len(v1.onnx) == m["size"]


@pytest.mark.parametrize("field,value", [("version", 99), ("sha256", "0" * 64), ("tolerance", 1.0),
                                         ("expires", 4e9), ("metrics", {"accuracy": 1.0})])
def test_altered_manifest_field_breaks_the_signature(v1, keydir, field, value):
    pub = load_public(keydir / "signing.pub")
    m = json.loads(v1.manifest_raw)
    verify_manifest_obj(m, pub)  # untouched: valid
    m[field] = value

    with pytest.raises(SignatureError):
        verify_manifest_obj(m, pub)


def test_manifest_reference_matches_the_model(v1, template_registry):
    m = json.loads(v1.manifest_raw)
    ref = mc.decode_reference(m["reference"])

    feat, probs = ort_run(v1.onnx, np.asarray(ref["x"]))
    with torch.no_grad():
        tf, tp = edge_v1(template_registry)(torch.as_tensor(np.array(ref["x"])))

    assert np.abs(probs - ref["probs"]).max() <= m["tolerance"]
    assert np.abs(feat - ref["feat"]).max() <= m["tolerance"]
    assert np.abs(tp.numpy() - ref["probs"]).max() < 1e-6
