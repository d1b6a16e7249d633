"""shared.security.onnx_guard against models made by the onnx package, and against garbage."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper
from onnx.external_data_helper import set_external_data

from shared.security.onnx_guard import (
    MAX_DEPTH,
    OnnxExternalData,
    OnnxGuardError,
    OnnxMalformed,
    check_onnx_bytes,
)

OPSET = [helper.make_opsetid("", 17)]


def weights(name: str = "W") -> TensorProto:
    return numpy_helper.from_array(np.arange(12, dtype=np.float32).reshape(4, 3), name)


def external(t: TensorProto, location: str = "w.data") -> TensorProto:
    set_external_data(t, location=location, offset=0, length=48)
    t.data_location = TensorProto.EXTERNAL
    t.ClearField("raw_data")
    return t


def model(w: TensorProto | None = None, *, extra_nodes=(), extra_inits=(), sparse=(), **kw) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3])
    nodes = [helper.make_node("MatMul", ["x", "W"], ["y"]), *extra_nodes]
    g = helper.make_graph(nodes, "g", [x], [y], initializer=[w or weights(), *extra_inits],
                          sparse_initializer=list(sparse))
    return helper.make_model(g, opset_imports=OPSET, **kw)


def if_model(branch_init: TensorProto) -> onnx.ModelProto:
    """y = x @ W, plus an If node whose then-branch graph holds ``branch_init``."""
    out = helper.make_tensor_value_info("c", TensorProto.FLOAT, [4, 3])
    then_g = helper.make_graph([helper.make_node("Identity", [branch_init.name], ["c"])], "then", [], [out],
                               initializer=[branch_init])
    else_g = helper.make_graph([helper.make_node("Identity", ["W"], ["c"])], "else", [], [out])
    cond = helper.make_tensor("cond", TensorProto.BOOL, [], [True])
    node = helper.make_node("If", ["cond"], ["z"], then_branch=then_g, else_branch=else_g)
    return model(extra_nodes=[node], extra_inits=[cond])


def test_self_contained_models_pass_and_load_in_onnxruntime():
    import onnxruntime as ort

    for m in (model(), if_model(weights("B"))):
        data = m.SerializeToString()
        check_onnx_bytes(data)
        ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def test_model_saved_with_external_data_by_onnx_is_rejected(tmp_path: Path):
    # Prepare: what torch.onnx.export(dynamo=True) writes by default, or onnx.save with external data
    m = model()
    onnx.save_model(m, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="m.onnx.data", size_threshold=0)
    data = (tmp_path / "m.onnx").read_bytes()
    # Execute / Assert
    with pytest.raises(OnnxExternalData) as e:
        check_onnx_bytes(data)
    assert e.value.reason == "onnx_external_data" and isinstance(e.value, OnnxGuardError)
    assert (tmp_path / "m.onnx.data").exists()


@pytest.mark.parametrize("where", ["initializer", "path_traversal", "subgraph", "node_attribute", "sparse_values",
                                   "training_info", "function", "location_only", "entries_only"])
def test_external_data_anywhere_is_rejected(where):
    # Prepare
    if where == "initializer":
        m = model(external(weights()))
    elif where == "path_traversal":
        m = model(external(weights(), "../../../../etc/shadow"))
    elif where == "subgraph":
        m = if_model(external(weights("B")))
    elif where == "node_attribute":
        m = model(extra_nodes=[helper.make_node("Constant", [], ["k"], value=external(weights("k")))])
    elif where == "sparse_values":
        values = external(numpy_helper.from_array(np.ones(2, np.float32), "sv"))
        indices = numpy_helper.from_array(np.array([0, 5], np.int64), "si")
        m = model(sparse=[helper.make_sparse_tensor(values, indices, [4, 3])])
    elif where == "training_info":
        m = model()
        init = helper.make_graph([], "init", [], [], initializer=[external(weights("t"))])
        ti = onnx.TrainingInfoProto()
        ti.initialization.CopyFrom(init)
        m.training_info.append(ti)
    elif where == "function":
        m = model()
        f = helper.make_function("custom", "f", [], ["k"],
                                 [helper.make_node("Constant", [], ["k"], value=external(weights("k")))], OPSET)
        m.functions.append(f)
    elif where == "location_only":
        t = weights()
        t.data_location = TensorProto.EXTERNAL
        m = model(t)
    else:
        t = weights()
        set_external_data(t, location="w.data")
        t.data_location = TensorProto.DEFAULT  # set_external_data also marks it EXTERNAL
        m = model(t)
    # Execute / Assert
    with pytest.raises(OnnxExternalData):
        check_onnx_bytes(m.SerializeToString())


@pytest.mark.parametrize("data", [b"", b"\xff" * 11, b"\x0b", b"\x3a\x05ab", b"\x08", b"\x00\x01",
                                  b"\x08\x01"])  # last: a valid protobuf with no graph
def test_unreadable_or_graphless_bytes_are_malformed(data):
    with pytest.raises(OnnxMalformed) as e:
        check_onnx_bytes(data)
    assert e.value.reason == "onnx_malformed"


def test_truncated_model_is_malformed():
    data = model().SerializeToString()
    with pytest.raises(OnnxMalformed):
        check_onnx_bytes(data[: len(data) // 2])


def _ld(field: int, payload: bytes) -> bytes:
    n, out = len(payload), bytearray([(field << 3) | 2])
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out) + payload


def test_nesting_beyond_the_limit_is_malformed():
    graph = b""
    for _ in range(MAX_DEPTH // 3 + 2):  # graph -> node(1) -> attribute(5) -> g(6) -> graph ...
        graph = _ld(1, _ld(5, _ld(6, graph)))
    with pytest.raises(OnnxMalformed):
        check_onnx_bytes(_ld(7, graph))
    check_onnx_bytes(_ld(7, _ld(1, _ld(5, _ld(6, b"")))))  # shallow nesting is fine


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_never_raise_anything_but_a_guard_error(data):
    try:
        check_onnx_bytes(data)
    except OnnxGuardError:
        pass


CLEAN = model().SerializeToString()


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(CLEAN) - 1), st.integers(0, 255))
def test_single_byte_changes_of_a_model_never_crash_the_guard(pos, value):
    data = bytearray(CLEAN)
    data[pos] = value
    try:
        check_onnx_bytes(bytes(data))
    except OnnxGuardError:
        pass


def test_guard_does_not_import_onnx():
    code = "import sys, shared.security.onnx_guard; sys.exit('onnx' in sys.modules or 'google.protobuf' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0
