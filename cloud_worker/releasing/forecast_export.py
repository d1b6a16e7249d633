"""A forecaster's torch net -> one self-contained ONNX file, checked against torch before it may ship.

The classifier exporter (export.py) is bound to the classification contract (outputs ``feat`` and
``probs``); a forecaster has one input row (shared.model.forecast_windows.edge_inputs) and one output,
the next H values over the device's level. Same checks: onnx.checker, names, no external data, and
onnxruntime against torch on reference rows within the parity tolerance, else ExportError.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
import torch

from cloud_worker.releasing.export import ExportError, ort_session

INPUT, OUTPUT = "x", "forecast"


def to_onnx(net: torch.nn.Module, n_inputs: int, opset: int = 17) -> bytes:
    net = net.to("cpu").eval()
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(net, (torch.zeros((1, n_inputs)),), buf, input_names=[INPUT], output_names=[OUTPUT],
                          dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}}, opset_version=opset,
                          dynamo=False, do_constant_folding=True)
    return buf.getvalue()


def run(onnx_bytes: bytes, rows: np.ndarray) -> np.ndarray:
    return ort_session(onnx_bytes).run([OUTPUT], {INPUT: np.ascontiguousarray(rows, np.float32)})[0]


def export(net: torch.nn.Module, rows: np.ndarray, tolerance: float = 1e-4) -> tuple[bytes, float]:
    """(onnx bytes, max |torch - onnxruntime| on ``rows``); ExportError if any check fails."""
    import onnx

    rows = np.ascontiguousarray(rows, np.float32)
    data = to_onnx(net, rows.shape[1])
    try:
        proto = onnx.load_from_string(data)
        onnx.checker.check_model(proto, full_check=True)
    except Exception as exc:  # onnx raises several unrelated types for a bad graph
        raise ExportError(f"onnx.checker rejected the graph: {str(exc)[:300]}") from None
    names = ([i.name for i in proto.graph.input], [o.name for o in proto.graph.output])
    if names != ([INPUT], [OUTPUT]):
        raise ExportError(f"graph has inputs/outputs {names}; a forecaster wants [{INPUT!r}] and [{OUTPUT!r}]")
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in proto.graph.initializer):
        raise ExportError("graph references external data; the artifact must be one self-contained file")
    with torch.no_grad():
        want = net.eval()(torch.as_tensor(rows)).numpy()
    diff = float(np.abs(want - run(data, rows)).max())
    if not diff <= tolerance:
        raise ExportError(f"ONNX parity failed: max |torch - onnxruntime| = {diff:.3g} > {tolerance:g}")
    return data, diff
