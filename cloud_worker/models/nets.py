"""The models: a small edge model and a stronger cloud model per task (a spec's factories, or these defaults).

Edge model = backbone (input -> D features) + head; ``forward`` returns the contract's two outputs
(``feat``, ``probs``) so the whole module exports to one ONNX graph. The backbone is kept separate
so the learner can fine-tune the head alone on features the hub holds. ``probs`` is the softmax of
the logits over the model's fitted ``temperature`` (calibrated per release, cloud_worker/models/calibrate.py),
so an agent's threshold means what it says.

The cloud model sees the raw sample through its own input contract (twice the edge's resolution
for frames, the full window for signals), answers escalations, and teaches the edge. Defaults: a
batch-normalised CNN trained with augmentation for frames; MiniRocket with a ridge classifier for
windows (cloud_worker/models/rocket.py), the field's strong CPU method.
"""

from __future__ import annotations

from collections.abc import Callable

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
        self.register_buffer("temperature", torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = self.backbone(x)
        return feat, torch.softmax(self.head(feat) / self.temperature, dim=1)

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


def _downsample(in_ch: int, h: int, w: int, widths: tuple[int, ...]) -> tuple[list[nn.Module], int, int, int]:
    """Strided 3x3 convs that bring a large frame down to about 8x8, cheaply, before the common trunk.
    Returns the layers, the channels and the spatial size they leave (sizes are exact, so the graph
    needs no adaptive pooling, which ONNX exports only for sizes that divide evenly)."""
    layers: list[nn.Module] = []
    ch, k = in_ch, 0
    while min(h, w) > 8:
        out = widths[min(k, len(widths) - 1)]
        layers += [nn.Conv2d(ch, out, 3, stride=2, padding=1), nn.ReLU()]
        ch, h, w, k = out, (h + 1) // 2, (w + 1) // 2, k + 1
    return layers, ch, h, w


def image_edge(input_shape: tuple[int, ...], n_classes: int, feat_dim: int = FEAT_DIM) -> EdgeNet:
    """Default edge model of an image task: (C, H, W) -> feat_dim ReLU-sparse features -> MLP head.
    At 8x8 it is two 3x3 convs and a pool; larger frames get strided convs in front."""
    c, h, w = input_shape
    front, ch, h, w = _downsample(c, h, w, (16, 24, 32))
    backbone = nn.Sequential(
        *front,
        nn.Conv2d(ch, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * max(1, h // 2) * max(1, w // 2), feat_dim), nn.ReLU(),
    )
    return EdgeNet(backbone, feat_dim, n_classes)


def _cbr(i: int, o: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(i, o, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]


def image_cloud(input_shape: tuple[int, ...], n_classes: int, width: int = 24) -> CloudNet:
    """Default cloud model of an image task: a batch-normalised CNN at the cloud's resolution (a strided
    stem, four stages doubling the channels, global pooling), trained with augmentation. On the camera
    scenario's 96x128 frames it costs ~9 ms per sample and epoch on one CPU thread and reached 0.983 on
    the holdout from 400 labelled day frames (0.92 on night frames with 400 of them added), where three
    plain convolutions on the edge's 48x64 input stayed at 0.72 (docs/TASKS.md)."""
    c, h, w = input_shape
    ws = [width, 2 * width, 4 * width, round(5.33 * width), 8 * width]
    layers: list[nn.Module] = [*_cbr(c, ws[0], 2 if min(h, w) >= 32 else 1), *_cbr(ws[0], ws[1])]
    size = min(h, w) // (2 if min(h, w) >= 32 else 1)
    for i in (2, 3, 4):
        if size >= 8:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        layers += _cbr(ws[i - 1], ws[i])
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return CloudNet(nn.Sequential(*layers), ws[4], n_classes)


def window_edge(input_shape: tuple[int, ...], n_classes: int, feat_dim: int = FEAT_DIM, bins: int = 1) -> EdgeNet:
    """Default edge model of a window task: (C, T) -> two 1-D convs -> pooled features -> MLP head.

    ``bins`` is how many stretches of the window the pooling keeps apart. 1 (the default) pools the
    whole window, right where a pattern may appear anywhere (engine noise); more keep *when* it
    happens, which a day of hourly counts needs (a morning peak is a weekday). The number used is the
    largest divisor of the pooled length up to ``bins``, so the model exports to ONNX.
    """
    c, t = input_shape
    stride = 2 if t > 128 else 1  # long windows: halve the time axis at once (Pi-sized compute)
    length = ((t - 1) // stride + 1) // 2  # after the strided conv (padding keeps it) and the max-pool
    if bins < 1:
        raise ValueError(f"bins must be >= 1, not {bins}")
    bins = max(b for b in range(1, min(bins, length) + 1) if length % b == 0)
    backbone = nn.Sequential(
        nn.Conv1d(c, 16, 5, padding=2, stride=stride), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(16, 32, 5, padding=2), nn.ReLU(), nn.AdaptiveAvgPool1d(bins),
        nn.Flatten(), nn.Linear(32 * bins, feat_dim), nn.ReLU(),
    )
    return EdgeNet(backbone, feat_dim, n_classes)


def window_cloud(input_shape: tuple[int, ...], n_classes: int) -> CloudNet:
    """A 1-D CNN cloud model for windows (the default is MiniRocket: cloud_worker.models.rocket:minirocket)."""
    c, _ = input_shape
    body = nn.Sequential(
        nn.Conv1d(c, 32, 7, padding=3), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 64, 5, padding=2), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(64, 64, 3, padding=1), nn.BatchNorm1d(64), nn.ReLU(), nn.AdaptiveAvgPool1d(1),
        nn.Flatten(),
    )
    return CloudNet(body, 64, n_classes)


# A task spec names its models as `module:callable` factories (input_shape, n_classes) -> module;
# these are the defaults per kind, so a spec may leave them out.
DEFAULTS: dict[str, tuple[str, str]] = {
    "image": ("cloud_worker.models.nets:image_edge", "cloud_worker.models.nets:image_cloud"),
    "window": ("cloud_worker.models.nets:window_edge", "cloud_worker.models.rocket:minirocket"),
}


class FactoryError(ValueError):
    """A model factory that cannot be used; the message names it and why."""


def _factory(ref: str) -> Callable[..., nn.Module]:
    from lepton_tasks.datasets import resolve
    from lepton_tasks.spec import TaskSpecError

    try:
        return resolve(ref)
    except TaskSpecError as exc:
        raise FactoryError(str(exc)) from None


def _call(ref: str, key: str, kwargs: dict, task, shape: tuple[int, ...]):
    factory = _factory(ref)
    try:
        return factory(tuple(shape), len(task.classes), **kwargs)
    except (TypeError, ValueError) as exc:  # an argument the factory does not take, or refuses
        raise FactoryError(f"{key}: {ref} refused {kwargs}: {exc}") from None


def build_edge(task) -> EdgeNet:
    """The task's edge model: its spec's factory, or the default of its kind. Checked against the contract."""
    ref = task.spec.models.edge or DEFAULTS[task.kind][0]
    net = _call(ref, "models.edge_args", task.spec.models.edge_args, task, task.input_shape)
    if not isinstance(net, EdgeNet):
        raise FactoryError(f"models.edge: {ref} returned {type(net).__name__}, not a cloud_worker.models.nets.EdgeNet "
                           "(backbone -> features, head -> classes)")
    return net


def build_cloud(task):
    """The task's cloud model on its cloud input: its spec's factory, or the default of its kind. A torch
    module returning logits (trained with augmentation), or a classifier with ``fit``/``predict_proba``
    (MiniRocket's)."""
    ref = task.spec.models.cloud or DEFAULTS[task.kind][1]
    net = _call(ref, "models.cloud_args", task.spec.models.cloud_args, task, task.cloud_input_shape)
    if not isinstance(net, nn.Module) and not (hasattr(net, "fit") and hasattr(net, "predict_proba")):
        raise FactoryError(f"models.cloud: {ref} returned {type(net).__name__}, not a torch module or a "
                           "classifier with fit and predict_proba")
    return net


def load_edge_state(net: EdgeNet, state: dict) -> EdgeNet:
    """Load an edge state; one saved before temperatures existed serves at temperature 1."""
    missing, unexpected = net.load_state_dict(state, strict=False)
    if unexpected or set(missing) - {"temperature"}:
        raise RuntimeError(f"edge state does not fit the model: missing {missing}, unexpected {unexpected}")
    return net
