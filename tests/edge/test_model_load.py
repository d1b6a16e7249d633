"""load_model: the contract, preprocessing and reference checks, each with its reason."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from edge_agent.model import ModelRejected, load_model
from lepton_tasks import load_task
from shared.protocol.topics import Topics
from tests.edge.models import release

T = Topics("lepton/v1/unit")
SHAPE = load_task("digits").input_shape


def reason(blob, manifest, raw=b"{}", **kw) -> str:
    with pytest.raises(ModelRejected) as ei:
        load_model(blob, manifest, raw, expect_shape=SHAPE, **kw)
    return ei.value.reason


def test_good_model_loads_and_runs():
    rel = release(T, "digits", 1)
    m = load_model(rel.onnx, rel.manifest, rel.wire, expect_shape=SHAPE, probe=load_task("digits").dataset().raw[0])
    feat, probs = m.run(np.zeros((1, *SHAPE), np.float32))
    assert feat.shape == (1, 64) and probs.shape == (1, 10) and abs(float(probs.sum()) - 1) < 1e-5


def test_renamed_output_breaks_the_contract():
    rel = release(T, "digits", 1)
    model = onnx.load_from_string(rel.onnx)
    model.graph.output[1].name = "scores"
    model.graph.node[-1].output[0] = "scores"
    assert reason(model.SerializeToString(), rel.manifest) == "contract"


def test_model_for_another_input_shape_is_refused():
    health = release(T, "health", 1)
    digits = release(T, "digits", 1)
    assert reason(health.onnx, digits.manifest) == "contract"


def test_unknown_preprocessing_step_is_refused():
    rel = release(T, "digits", 1)
    spec = rel.manifest.input.model_copy(update={"preprocess": {"steps": [{"op": "sharpen"}]}})
    assert reason(rel.onnx, rel.manifest.model_copy(update={"input": spec})) == "bad_preprocess"


def test_preprocessing_that_does_not_fit_the_source_is_refused():
    rel = release(T, "digits", 1)
    sensor_window = np.zeros((6, 100), np.float32)
    spec = rel.manifest.input.model_copy(update={"preprocess": {"steps": [{"op": "batch"}]}})
    assert reason(rel.onnx, rel.manifest.model_copy(update={"input": spec}), probe=sensor_window) == "bad_preprocess"


def test_reference_outside_tolerance_is_refused_inside_is_accepted():
    assert reason(release(T, "digits", 1, reference_shift=1e-2).onnx,
                  release(T, "digits", 1, reference_shift=1e-2).manifest) == "reference_mismatch"
    ok = release(T, "digits", 1, reference_shift=1e-5)
    load_model(ok.onnx, ok.manifest, ok.wire, expect_shape=SHAPE)


def test_garbage_bytes_do_not_load():
    rel = release(T, "digits", 1)
    assert reason(b"\x08\x01garbage", rel.manifest) == "load_failed"
