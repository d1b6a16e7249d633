"""What every Lepton model looks like from the outside, so agent and worker agree.

An edge model is one ONNX graph with input ``x`` (float32, [batch, *task.input_shape]) and
two outputs: ``feat`` (float32 [batch, D], the features uploaded to the hub) and ``probs``
(float32 [batch, C], softmax class probabilities). The manifest's ``reference`` field is a
base64 tensor container holding reference inputs ``x`` and the outputs the exporter saw,
``feat`` and ``probs``; an agent runs ``x`` and requires max |diff| <= manifest.tolerance
before it swaps the model in.

An anomaly task's edge model has ``score`` in place of ``probs``: float32 [batch, 1], how far
from normal the sample is (higher: less normal), which the agent compares with the manifest's
threshold (shared/model/threshold.py).
"""

from __future__ import annotations

import base64

import numpy as np

from shared.protocol import codec

INPUT = "x"
OUTPUT_FEAT = "feat"
OUTPUT_PROBS = "probs"
OUTPUT_SCORE = "score"
OUTPUTS = (OUTPUT_FEAT, OUTPUT_PROBS)
ANOMALY_OUTPUTS = (OUTPUT_FEAT, OUTPUT_SCORE)

# Sample ids are unique per device across restarts: boot epoch (unix s) * 1e9 + counter.
_PER_BOOT = 1_000_000_000


def sample_id(boot: int, n: int) -> int:
    if not 0 <= n < _PER_BOOT:
        raise ValueError("sample counter out of range")
    return boot * _PER_BOOT + n


def split_sample_id(sample: int) -> tuple[int, int]:
    return divmod(int(sample), _PER_BOOT)


def encode_reference(x: np.ndarray, feat: np.ndarray, probs: np.ndarray) -> str:
    blob = codec.encode({INPUT: x.astype(np.float32), OUTPUT_FEAT: feat.astype(np.float32),
                         OUTPUT_PROBS: probs.astype(np.float32)}, {"kind": "reference"})
    return base64.b64encode(blob).decode()


def decode_reference(ref: str) -> codec.Bundle:
    try:
        blob = base64.b64decode(ref, validate=True)
    except ValueError:
        raise codec.Malformed("reference is not base64") from None
    b = codec.decode(blob)
    for name in (INPUT, *OUTPUTS):
        if name not in b.tensors:
            raise codec.Malformed(f"reference lacks tensor {name!r}")
    return b
