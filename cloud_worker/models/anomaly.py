"""Anomaly detectors of an anomaly task: learn normal from unlabelled windows, score how far from it a window is.

One interface for every method: ``fit(x)`` on (N, C, T) windows nobody labelled, ``score(x)`` ->
(N,) float64, higher is less normal, ``calibrate(normal_x, rate)`` sets the alert threshold on
held-out normal windows (shared/model/threshold.py, the conservative conformal quantile), and
``predict(x)`` is ``score(x) > threshold``.

Contamination: the stream that trains a detector is unlabelled, so it holds a few anomalies. With
``trim`` > 0 a detector fits, scores its own training windows (leave-one-out for kNN), drops the
top-scored ``trim`` share and fits again on the rest: an anomaly that made it into training then
no longer vouches for the anomalies like it. Trimming a few normals costs little, so ``trim`` is an
upper bound on the contamination, not an estimate of it. For kNN the trimming score only sees a
cluster of alike contaminants when k exceeds the cluster: with k = 5, twelve alike anomalies are
each other's neighbours and score normal even leave-one-out (tests/cloud/test_anomaly.py).

Methods: ``ConvAutoencoder`` for the edge (a 6.7k-parameter 1-D conv autoencoder whose ONNX graph
outputs the reconstruction error as ``score``; cloud_worker/releasing/export.py exports it);
``AcfKNN`` for the edge on noise-like signals (kNN on autocorrelation lags, computed in the graph); and
``RocketKNN`` for the cloud (mean distance to the k nearest training windows in standardised
MiniRocket features; k = 20 so that a small cluster of contaminating anomalies cannot be its own
neighbourhood).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
from torch import nn

from cloud_worker.models.train import Interrupted
from shared.model import model_contract as mc
from shared.model.threshold import Threshold, calibrate


class AnomalyError(ValueError):
    """Windows a detector cannot fit or score (wrong shape, too few, not finite)."""


def _windows(x: np.ndarray, shape: tuple[int, ...] | None = None, at_least: int = 1) -> np.ndarray:
    x = np.asarray(x, np.float32)
    if x.ndim != 3:
        raise AnomalyError(f"windows must be (N, channels, time), got shape {x.shape}")
    if shape is not None and x.shape[1:] != tuple(shape):
        raise AnomalyError(f"windows of shape {x.shape[1:]} do not fit the detector's {tuple(shape)}")
    if len(x) < at_least:
        raise AnomalyError(f"{len(x)} windows; at least {at_least} needed")
    if not np.isfinite(x).all():
        raise AnomalyError("windows hold NaN or Inf")
    return x


def _kept(self_scores: np.ndarray, trim: float) -> np.ndarray:
    """Indexes of the windows left once the top-scored ``trim`` share is dropped."""
    keep = len(self_scores) - int(np.floor(trim * len(self_scores)))
    return np.sort(np.argsort(self_scores, kind="stable")[:keep])


def knn_distance(f: np.ndarray, bank: np.ndarray, k: int, skip_self: bool = False) -> np.ndarray:
    """Mean Euclidean distance of each row of ``f`` to its ``k`` nearest rows of ``bank``; ``skip_self``:
    ``f`` is ``bank`` and a row is not its own neighbour (leave-one-out)."""
    bb = (bank.astype(np.float64) ** 2).sum(1)
    kk = min(k + int(skip_self), len(bank))
    out = np.empty(len(f))
    for i in range(0, len(f), 512):  # squared distances by the dot-product identity, a block at a time
        q = f[i:i + 512].astype(np.float64)
        d2 = (q ** 2).sum(1)[:, None] + bb[None, :] - 2.0 * q @ bank.T.astype(np.float64)
        near = np.sqrt(np.maximum(np.partition(d2, kk - 1, axis=1)[:, :kk], 0.0))
        near.sort(axis=1)
        out[i:i + 512] = near[:, int(skip_self):].mean(1)
    return out


class AnomalyDetector:
    """The interface: subclasses implement ``_fit`` and ``score`` (and ``_self_scores`` for trimming)."""

    trim: float = 0.0
    threshold: Threshold | None = None
    input_shape: tuple[int, ...] | None = None
    kept: np.ndarray | None = None  # indexes of the training windows the final fit used

    def fit(self, x: np.ndarray, *, stop: threading.Event | None = None) -> AnomalyDetector:
        x = _windows(x, at_least=self._min_fit())
        self.input_shape = tuple(x.shape[1:])
        self.threshold = None
        self._fit(x, stop)
        self.kept = np.arange(len(x))
        if self.trim > 0:
            self.kept = _kept(self._self_scores(x), self.trim)
            self._refit(x[self.kept], stop)
        return self

    def calibrate(self, normal_x: np.ndarray, rate: float) -> Threshold:
        self.threshold = calibrate(self.score(normal_x), rate)
        return self.threshold

    def predict(self, x: np.ndarray) -> np.ndarray:
        if self.threshold is None:
            raise AnomalyError("no threshold: calibrate on held-out normal windows first")
        return self.score(x) > self.threshold.value

    def score(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def nbytes(self) -> int:
        """What the fitted detector weighs (its parameters or stored features)."""
        raise NotImplementedError

    def _fit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        raise NotImplementedError

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        return self.score(x)

    def _refit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        """The fit after trimming; from scratch unless a method can do better."""
        self._fit(x, stop)

    def _min_fit(self) -> int:
        return 2


# ---- edge: a small conv autoencoder whose graph outputs the score --------------------------------

class ConvAE(nn.Module):
    """(B, C, T) -> (feat (B, width), score (B, 1)): the mean squared reconstruction error is the score,
    computed in the graph so the edge runs one ONNX model and reads the score off it."""

    outputs = mc.ANOMALY_OUTPUTS

    def __init__(self, channels: int, length: int, width: int = 32, code: int = 4) -> None:
        super().__init__()
        self.length = length
        self.encoder = nn.Sequential(
            nn.Conv1d(channels, 16, 7, stride=2, padding=3), nn.ReLU(),
            nn.Conv1d(16, width, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(width, code, 5, stride=2, padding=2), nn.ReLU(),
        )
        # Upsample + conv rather than transposed convs: the output length is then exact after a crop,
        # for any input length, with no checkerboard artefacts to learn around.
        self.decoder = nn.Sequential(
            nn.Upsample(scale_factor=2.0), nn.Conv1d(code, width, 5, padding=2), nn.ReLU(),
            nn.Upsample(scale_factor=2.0), nn.Conv1d(width, 16, 5, padding=2), nn.ReLU(),
            nn.Upsample(scale_factor=2.0), nn.Conv1d(16, channels, 7, padding=3),
        )

    def reconstruct(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder(x)
        return z, self.decoder(z)[..., : self.length]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z, r = self.reconstruct(x)
        return z.mean(dim=2), ((x - r) ** 2).mean(dim=(1, 2)).unsqueeze(1)


class ConvAutoencoder(AnomalyDetector):
    """The edge detector: ``ConvAE`` trained to reconstruct normal windows (Adam, MSE)."""

    def __init__(self, epochs: int = 60, batch: int = 64, lr: float = 3e-3, width: int = 32, code: int = 4,
                 trim: float = 0.0, seed: int = 0) -> None:
        self.epochs, self.batch, self.lr, self.width, self.code = epochs, batch, lr, width, code
        self.trim, self.seed = trim, seed
        self.net: ConvAE | None = None

    def _fit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        torch.manual_seed(self.seed)
        self._train(ConvAE(x.shape[1], x.shape[2], self.width, self.code), x, self.epochs, self.lr, stop)

    def _refit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        # after trimming, a third of the epochs from where the first fit stopped, at a lower rate:
        # the trimmed windows are few, so the net need not relearn normal from scratch
        self._train(self.net, x, max(1, self.epochs // 3), self.lr / 4, stop)  # type: ignore[arg-type]

    def _train(self, net: ConvAE, x: np.ndarray, epochs: int, lr: float, stop: threading.Event | None) -> None:
        g = torch.Generator().manual_seed(self.seed)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
        xt = torch.from_numpy(x)
        net.train()
        for _ in range(epochs):
            if stop is not None and stop.is_set():
                raise Interrupted("stopping: autoencoder fit abandoned")
            for idx in torch.randperm(len(xt), generator=g).split(self.batch):
                loss = net(xt[idx])[1].mean()
                opt.zero_grad()
                loss.backward()
                opt.step()
            sched.step()
        self.net = net.eval()

    def score(self, x: np.ndarray) -> np.ndarray:
        return _graph_scores(self.net, _windows(x, self.input_shape, at_least=0))

    def nbytes(self) -> int:
        return 4 * sum(p.numel() for p in self.net.parameters()) if self.net is not None else 0


# ---- cloud: kNN on standardised MiniRocket features -------------------------------------------------

class RocketKNN(AnomalyDetector):
    """Mean distance to the ``k`` nearest training windows in MiniRocket feature space.

    ``standardise``: features are scaled by the training windows' mean and deviation, so no few
    high-variance kernels dominate the distance (FordA: 0.86 with, near chance without, per the issue)."""

    def __init__(self, k: int = 20, trim: float = 0.05, standardise: bool = True, n_kernels: int = 10_000,
                 seed: int = 0) -> None:
        self.k, self.trim, self.standardise, self.n_kernels, self.seed = k, trim, standardise, n_kernels, seed
        self._rocket = None
        self._mu: np.ndarray | None = None
        self._sd: np.ndarray | None = None
        self._bank: np.ndarray | None = None
        self._raw: np.ndarray | None = None  # the training windows' features, unstandardised

    def _min_fit(self) -> int:
        return self.k + 2

    def _transform(self, x: np.ndarray, stop: threading.Event | None = None) -> np.ndarray:
        from cloud_worker.models.rocket import _pad
        from cloud_worker.models.stopcheck import chunks

        out = []
        for s in chunks(len(x)):  # sized to take ~0.2 s each; a watched stop is checked between them too
            if stop is not None and stop.is_set():
                raise Interrupted("stopping: transform abandoned")
            out.append(self._rocket.transform(_pad(x[s])))  # type: ignore[union-attr]
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)

    def _fit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        from aeon.transformations.collection.convolution_based import MiniRocket

        from cloud_worker.models.rocket import _pad

        self._rocket = MiniRocket(n_kernels=self.n_kernels, random_state=self.seed, n_jobs=1).fit(_pad(x))
        self._raw = self._transform(x, stop)
        self._set_bank(self._raw)

    def _refit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        # the kernels (and their biases, drawn from the first fit's windows) stay: only the bank and its
        # standardisation lose the trimmed windows, so no window is transformed twice
        self._set_bank(self._raw[self.kept])

    def _set_bank(self, f: np.ndarray) -> None:
        if self.standardise:
            self._mu, self._sd = f.mean(0), f.std(0) + 1e-6
            f = (f - self._mu) / self._sd
        self._bank = f

    def _features(self, x: np.ndarray) -> np.ndarray:
        f = self._transform(x)
        return (f - self._mu) / self._sd if self.standardise else f

    def score(self, x: np.ndarray) -> np.ndarray:
        if self._bank is None:
            raise AnomalyError("not fitted")
        x = _windows(x, self.input_shape, at_least=0)
        return knn_distance(self._features(x), self._bank, self.k) if len(x) else np.zeros(0)

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        return knn_distance(self._bank, self._bank, self.k, skip_self=True)  # type: ignore[arg-type]

    def nbytes(self) -> int:
        return int(self._bank.nbytes) if self._bank is not None else 0


# ---- edge, for noise-like signals: kNN on autocorrelation, the whole detector in the graph ---------

class AcfKNNNet(nn.Module):
    """(B, C, T) -> (feat: the standardised autocorrelation at lags 1..L (B, L), score (B, 1)): the mean
    distance to the k nearest of a bank of normal windows' features, all in one exportable graph."""

    outputs = mc.ANOMALY_OUTPUTS

    def __init__(self, lags: int, k: int, mu: np.ndarray, sd: np.ndarray, bank: np.ndarray) -> None:
        super().__init__()
        self.lags, self.k = lags, k
        self.register_buffer("mu", torch.as_tensor(mu, dtype=torch.float32)[None])
        self.register_buffer("sd", torch.as_tensor(sd, dtype=torch.float32)[None])
        self.register_buffer("bank", torch.as_tensor(bank, dtype=torch.float32))
        self.register_buffer("bank_sq", (self.bank ** 2).sum(1)[None])

    def acf(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=2, keepdim=True)
        var = (x * x).mean(dim=(1, 2)) + 1e-8
        return torch.stack([(x[..., lag:] * x[..., :-lag]).mean(dim=(1, 2)) / var
                            for lag in range(1, self.lags + 1)], dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = (self.acf(x) - self.mu) / self.sd
        d2 = (z * z).sum(1, keepdim=True) + self.bank_sq - 2.0 * z @ self.bank.T
        near = torch.topk(torch.sqrt(torch.clamp(d2, min=0.0)), self.k, dim=1, largest=False).values
        return z, near.mean(dim=1, keepdim=True)


class AcfKNN(AnomalyDetector):
    """The edge detector for noise-like signals (engine noise), where what is normal is the spectrum, not
    the waveform, and a raw-window autoencoder scores near chance (FordA: 0.52-0.56 in the issue). The
    bank is a random ``bank`` of the (trimmed) training windows, which bounds the graph's size."""

    def __init__(self, lags: int = 50, k: int = 20, trim: float = 0.05, bank: int = 400, seed: int = 0) -> None:
        self.lags, self.k, self.trim, self.bank, self.seed = lags, k, trim, bank, seed
        self.net: AcfKNNNet | None = None
        self._z: np.ndarray | None = None

    def _min_fit(self) -> int:
        return self.k + 2

    def _fit(self, x: np.ndarray, stop: threading.Event | None) -> None:
        if x.shape[2] <= self.lags:
            raise AnomalyError(f"windows of {x.shape[2]} steps are too short for {self.lags} lags")
        probe = AcfKNNNet(self.lags, 1, np.zeros(self.lags), np.ones(self.lags), np.zeros((1, self.lags)))
        with torch.no_grad():
            f = torch.cat([probe.acf(torch.from_numpy(x[i:i + 1024])) for i in range(0, len(x), 1024)]).numpy()
        mu, sd = f.mean(0), f.std(0) + 1e-6
        self._z = (f - mu) / sd
        rng = np.random.default_rng(self.seed)
        pick = np.sort(rng.permutation(len(x))[: self.bank])
        self.net = AcfKNNNet(self.lags, min(self.k, len(pick)), mu, sd, self._z[pick]).eval()

    def _self_scores(self, x: np.ndarray) -> np.ndarray:
        return knn_distance(self._z, self._z, self.k, skip_self=True)  # type: ignore[arg-type]

    def score(self, x: np.ndarray) -> np.ndarray:
        return _graph_scores(self.net, _windows(x, self.input_shape, at_least=0))

    def nbytes(self) -> int:
        return 4 * int(self.net.bank.numel() + 3 * self.lags) if self.net is not None else 0


def edge_autoencoder(**kw) -> ConvAutoencoder:
    return ConvAutoencoder(**kw)


def cloud_knn(**kw) -> RocketKNN:
    return RocketKNN(**kw)


def edge_acf_knn(**kw) -> AcfKNN:
    return AcfKNN(**kw)


def _graph_scores(net: nn.Module | None, x: np.ndarray, batch: int = 1024) -> np.ndarray:
    """An edge detector's ``score`` output over ``x`` in batches: what its exported graph computes."""
    if net is None:
        raise AnomalyError("not fitted")
    with torch.no_grad():
        out = [net(torch.from_numpy(x[i:i + batch]))[1] for i in range(0, len(x), batch)]
    return torch.cat(out).numpy().ravel().astype(np.float64) if out else np.zeros(0)
