"""Refuse ONNX models that would make the runtime read anything but the bytes we verified.

An ONNX tensor may keep its data outside the model (``data_location = EXTERNAL`` plus
``external_data`` entries whose ``location`` is a file path). onnxruntime resolves such a
path against the model's directory or the working directory, so a signed-looking model
could make the agent read ``../../etc/shadow`` or a file swapped in after verification
as weights. The signature and sha256 only vouch for the bytes we hold, so a model must be
self-contained: every tensor's data inside those bytes.

The edge has no ``onnx`` package, so this walks the protobuf wire format itself, visiting
only the messages that can hold a TensorProto (model -> graph -> node -> attribute ->
subgraph/tensor, sparse tensors, training info, functions) and skipping every other field
by its wire type. The walk is strict: a truncated varint, a length past the end, a group
wire type or nesting deeper than ``MAX_DEPTH`` is ``OnnxMalformed``, never a guess, so bytes
this parser cannot read are rejected rather than waved through to onnxruntime.
"""

from __future__ import annotations

MAX_DEPTH = 64  # graphs nest through If/Loop/Scan attributes; real models stay far below

# Message kinds we descend into.
_MODEL, _GRAPH, _NODE, _ATTR, _TENSOR, _SPARSE, _TRAINING, _FUNCTION = range(8)

# field number -> child message kind, per onnx.proto (only fields that can reach a TensorProto).
_CHILDREN: dict[int, dict[int, int]] = {
    _MODEL: {7: _GRAPH, 20: _TRAINING, 25: _FUNCTION},
    _GRAPH: {1: _NODE, 5: _TENSOR, 15: _SPARSE},
    _NODE: {5: _ATTR},
    _ATTR: {5: _TENSOR, 6: _GRAPH, 10: _TENSOR, 11: _GRAPH, 22: _SPARSE, 23: _SPARSE},
    _TENSOR: {},
    _SPARSE: {1: _TENSOR, 2: _TENSOR},
    _TRAINING: {1: _GRAPH, 2: _GRAPH},
    _FUNCTION: {7: _NODE, 11: _ATTR},
}
_TENSOR_EXTERNAL_DATA = 13  # repeated StringStringEntryProto (location, offset, length, ...)
_TENSOR_DATA_LOCATION = 14  # enum DataLocation { DEFAULT = 0; EXTERNAL = 1; }
_MODEL_GRAPH = 7


class OnnxGuardError(ValueError):
    """An ONNX model the agent must not load; ``reason`` is a stable counter key."""

    reason = "onnx_rejected"


class OnnxExternalData(OnnxGuardError):
    """A tensor points at data (a file path) outside the model bytes."""

    reason = "onnx_external_data"


class OnnxMalformed(OnnxGuardError):
    """Not a protobuf this guard can read completely; rejected rather than guessed at."""

    reason = "onnx_malformed"


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if pos >= end:
            raise OnnxMalformed("truncated varint")
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7
    raise OnnxMalformed("varint longer than 10 bytes")


def check_onnx_bytes(data: bytes | bytearray | memoryview) -> None:
    """Return None for a self-contained model; raise OnnxExternalData or OnnxMalformed."""
    buf = memoryview(data).cast("B")
    if len(buf) == 0:
        raise OnnxMalformed("empty model")
    has_graph = False
    stack: list[tuple[int, int, int, int]] = [(0, len(buf), _MODEL, 0)]  # (start, end, kind, depth)
    while stack:
        pos, end, kind, depth = stack.pop()
        children = _CHILDREN[kind]
        while pos < end:
            key, pos = _varint(buf, pos, end)
            field, wire = key >> 3, key & 7
            if field == 0:
                raise OnnxMalformed("field number 0")
            if wire == 0:
                value, pos = _varint(buf, pos, end)
                if kind == _TENSOR and field == _TENSOR_DATA_LOCATION and value != 0:
                    raise OnnxExternalData("a tensor has data_location EXTERNAL")
            elif wire == 1:
                pos += 8
            elif wire == 5:
                pos += 4
            elif wire == 2:
                length, pos = _varint(buf, pos, end)
                start, pos = pos, pos + length
                if pos > end:
                    raise OnnxMalformed("length-delimited field runs past its message")
                if kind == _TENSOR and field == _TENSOR_EXTERNAL_DATA:
                    raise OnnxExternalData("a tensor has external_data entries (a file path)")
                if kind == _TENSOR and field == _TENSOR_DATA_LOCATION:
                    raise OnnxMalformed("data_location with a length-delimited wire type")
                child = children.get(field)
                if child is not None:
                    if depth + 1 > MAX_DEPTH:
                        raise OnnxMalformed(f"messages nested deeper than {MAX_DEPTH}")
                    stack.append((start, pos, child, depth + 1))
                    if kind == _MODEL and field == _MODEL_GRAPH:
                        has_graph = True
            else:
                raise OnnxMalformed(f"unsupported wire type {wire}")
            if pos > end:
                raise OnnxMalformed("fixed-width field runs past its message")
    if not has_graph:
        raise OnnxMalformed("no graph in the model")
