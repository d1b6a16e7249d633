"""The model half of ``lepton tasks check``: build a task's own edge and cloud models and run each once.

Whatever the models are: the edge is a torch EdgeNet that must export to one ONNX graph (what ships to
agents); the cloud is a torch module on the cloud input, or a classifier with ``fit``/``predict_proba``
(MiniRocket for windows), which is fitted on the seed samples first, since it has no output before.
Every problem is one ``TaskSpecError`` line naming the key.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from cloud_worker.models import nets
from cloud_worker.releasing.export import to_onnx
from lepton_tasks.check import Checked
from lepton_tasks.spec import TaskSpecError

FIT_SAMPLES = 64  # seed samples a fit-first cloud model is fitted on for the check: enough to run, quick


def check_models(c: Checked, out: Callable[[str], object] = print) -> None:
    task, n = c.task, len(c.task.classes)
    try:
        edge, cloud = nets.build_edge(task), nets.build_cloud(task)
    except (nets.FactoryError, TypeError, ValueError, RuntimeError) as exc:
        raise TaskSpecError(f"models: {exc}") from None
    with torch.no_grad():
        xt = torch.as_tensor(c.x)
        try:
            feat, probs = edge.eval()(xt)
        except RuntimeError as exc:
            raise TaskSpecError(f"models.edge: a forward pass on {tuple(xt.shape)} failed: {str(exc)[:200]}") from None
    if probs.shape[-1] != n:
        raise TaskSpecError(f"models.edge: outputs {probs.shape[-1]} class scores, the spec names {n} classes")
    try:  # what ships to agents must export to one ONNX graph
        size = len(to_onnx(edge, task.input_shape))
    except Exception as exc:  # torch.onnx raises many kinds of error for a graph it cannot export
        raise TaskSpecError(f"models.edge: does not export to ONNX: {str(exc).splitlines()[0][:200]}") from None
    out(f"  edge model: {type(edge).__name__}, {_params(edge):,} parameters, features {tuple(feat.shape[1:])}, "
        f"scores {tuple(probs.shape[1:])}, ONNX {size / 1024:.0f} KiB")
    width, what = _run_cloud(cloud, c)
    if width != n:
        raise TaskSpecError(f"models.cloud: outputs {width} class scores, the spec names {n} classes")
    out(f"  cloud model: {type(cloud).__name__}, {what}, on input {task.cloud_input_shape}")


def _run_cloud(cloud, c: Checked) -> tuple[int, str]:
    """(class scores per sample, a description) from one pass of the cloud model on its own input."""
    task = c.task
    if isinstance(cloud, nn.Module):
        xc = torch.as_tensor(task.preprocess_cloud_all(c.raw))
        with torch.no_grad():
            try:
                logits = cloud.eval()(xc)
            except RuntimeError as exc:
                raise TaskSpecError(f"models.cloud: a forward pass on {tuple(xc.shape)} failed: "
                                    f"{str(exc)[:200]}") from None
        return int(logits.shape[-1]), f"{_params(cloud):,} parameters, logits {tuple(logits.shape[1:])}"
    idx = c.data.seed[:FIT_SAMPLES]
    xc = task.preprocess_cloud_all(c.data.raw[idx])
    y = np.asarray(c.data.y[idx])
    if len(np.unique(y)) < 2:
        raise TaskSpecError("split.seed: the seed holds one class only; the cloud model cannot be fitted")
    try:
        cloud.fit(xc, y)
        p = cloud.predict_proba(xc[:2])
    except (ValueError, RuntimeError) as exc:
        raise TaskSpecError(f"models.cloud: fitting on {len(y)} seed samples failed: {str(exc)[:200]}") from None
    return int(p.shape[-1]), f"fitted on {len(y)} seed samples, probabilities {tuple(p.shape[1:])}"


def _params(m: nn.Module) -> int:
    return sum(int(np.prod(p.shape)) for p in m.parameters())
