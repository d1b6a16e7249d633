"""The networks, chosen per task kind: a small edge model and a bigger cloud model.

Edge model = backbone (input -> D features) + linear head; ``forward`` returns the
contract's two outputs (``feat``, ``probs``) so the whole module exports to one ONNX graph.
The backbone is kept separate so the learner can freeze it: features the hub already
holds stay valid for every version that shares the backbone.

The cloud model is wider and deeper, sees the raw model input (hard samples carry it),
answers escalations and acts as the teacher for pseudo-labels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

FEAT_DIM = 64
HEAD_HIDDEN = 64


class EdgeNet(nn.Module):
    def __init__(self, backbone: nn.Module, feat_dim: int, n_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.feat_dim = feat_dim
        # A small MLP rather than one linear layer: fine-tuned alone on uploaded features,
        # it has the capacity to keep improving as labels arrive (measured: 0.88 -> 0.98).
        self.head = nn.Sequential(nn.Linear(feat_dim, HEAD_HIDDEN), nn.ReLU(), nn.Linear(HEAD_HIDDEN, n_classes))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.backbone(x)
        return feat, torch.softmax(self.head(feat), dim=1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


class CloudNet(nn.Module):
    def __init__(self, body: nn.Module, width: int, n_classes: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward(x)


def _image_backbone(in_ch: int, feat_dim: int) -> nn.Module:
    # 8x8 input: two 3x3 convs, one pool, then a global pool -> feat_dim (ReLU-sparse features).
    return nn.Sequential(
        nn.Conv2d(in_ch, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 4 * 4, feat_dim), nn.ReLU(),
    )


def _image_cloud(in_ch: int) -> tuple[nn.Module, int]:
    body = nn.Sequential(
        nn.Conv2d(in_ch, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(64, 96, 3, padding=1), nn.BatchNorm2d(96), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(96 * 2 * 2, 128), nn.ReLU(),
    )
    return body, 128


def _sensor_backbone(in_ch: int, feat_dim: int) -> nn.Module:
    return nn.Sequential(
        nn.Conv1d(in_ch, 16, 5, padding=2), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
        nn.Flatten(), nn.Linear(32, feat_dim), nn.ReLU(),
    )


def _sensor_cloud(in_ch: int) -> tuple[nn.Module, int]:
    body = nn.Sequential(
        nn.Conv1d(in_ch, 32, 7, padding=3), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(64, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )
    return body, 64


@dataclass(frozen=True)
class Builders:
    backbone: Callable[[int, int], nn.Module]  # (input channels, feat_dim)
    cloud: Callable[[int], tuple[nn.Module, int]]  # input channels -> (body, width)


# Keyed by TaskDef.kind: a new task of an existing kind needs no code here.
BUILDERS: dict[str, Builders] = {
    "image": Builders(_image_backbone, _image_cloud),
    "sensor": Builders(_sensor_backbone, _sensor_cloud),
}


def _builders(kind: str) -> Builders:
    try:
        return BUILDERS[kind]
    except KeyError:
        raise KeyError(f"no model builders for task kind {kind!r}; known: {sorted(BUILDERS)}") from None


def build_edge(kind: str, input_shape: tuple[int, ...], n_classes: int, feat_dim: int = FEAT_DIM) -> EdgeNet:
    return EdgeNet(_builders(kind).backbone(input_shape[0], feat_dim), feat_dim, n_classes)


def build_cloud(kind: str, input_shape: tuple[int, ...], n_classes: int) -> CloudNet:
    body, width = _builders(kind).cloud(input_shape[0])
    return CloudNet(body, width, n_classes)
