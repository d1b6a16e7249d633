"""The default cloud model of a window task: MiniRocket features and a ridge classifier.

MiniRocket (Dempster, Schmidt and Webb, KDD 2021) convolves each window with 84 fixed kernels at
many dilations and keeps the proportion of positive values: ~10,000 features in seconds on a CPU,
and with a ridge classifier on top it is within a point of the best deep time-series models on the
UCR archive (FordA 0.948, ECG5000 0.946 over 30 resamples; ChangWeiTan/MultiRocket's
results/all_resamples_average.csv). aeon implements it in numpy/numba.

Fitting and scoring are interruptible: the transform runs in chunks sized to take ~0.2 s each
(cloud_worker/models/stopcheck.py; 512 windows took over a second on a loaded box) that check the
stop event, and the ridge
solve (BLAS, seconds to a minute for thousands of rows) runs on a helper thread that a stopping
worker abandons instead of waiting for. Probabilities are a softmax of the ridge scores at a
temperature fitted on the holdout (cloud_worker/models/calibrate.py).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
from aeon.transformations.collection.convolution_based import MiniRocket
from sklearn.linear_model import RidgeClassifierCV

from cloud_worker.models.calibrate import fit_temperature, softmax
from cloud_worker.models.stopcheck import Interrupted, chunks, current, watching
from cloud_worker.models.train import FitStats


def run_interruptible(fn, stop: threading.Event | None, poll_s: float = 0.1) -> Any:
    """``fn()`` on a daemon thread; raises Interrupted (leaving it to finish alone) once ``stop`` is set."""
    if stop is None:
        return fn()
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    th = threading.Thread(target=target, name="rocket-fit", daemon=True)
    th.start()
    while th.is_alive():
        if stop.wait(poll_s):
            raise Interrupted("stopping: fit abandoned")
    if "error" in box:
        raise box["error"]
    return box["value"]


class MiniRocketClassifier:
    """(N, C, T) windows -> class probabilities. ``fit`` then ``calibrate``; immutable once fitted."""

    kind = "rocket"

    def __init__(self, input_shape: tuple[int, ...], n_classes: int, n_kernels: int = 10_000, seed: int = 0,
                 alphas: tuple[float, ...] = tuple(np.logspace(-3, 3, 10))) -> None:
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.n_kernels = n_kernels
        self.seed = seed
        self.alphas = alphas
        self.temperature = 1.0
        self._rocket = None
        self._mu: np.ndarray | None = None
        self._sd: np.ndarray | None = None
        self._ridge = None

    def _transform(self, x: np.ndarray) -> np.ndarray:
        return self._rocket.transform(np.asarray(x, np.float32)).astype(np.float32)  # type: ignore[union-attr]

    def _standard(self, f: np.ndarray) -> np.ndarray:
        return (f - self._mu) / self._sd if self._mu is not None else f

    def _features(self, x: np.ndarray) -> np.ndarray:
        """MiniRocket features, standardised once fitted; the watched stop event is checked between chunks."""
        out = [self._standard(self._transform(x[s])) for s in chunks(len(x))]
        return np.concatenate(out) if out else np.zeros((0, 0), np.float32)

    def fit(self, x: np.ndarray, y: np.ndarray, *, stop: threading.Event | None = None) -> FitStats:
        with watching(stop if stop is not None else current()):
            return self._fit(x, y)

    def _fit(self, x: np.ndarray, y: np.ndarray) -> FitStats:
        t0 = time.perf_counter()
        x = np.asarray(x, np.float32)
        # A transform needs 9 steps at least; shorter windows are padded (counts over a day: 24).
        stop = current()
        rocket = MiniRocket(n_kernels=self.n_kernels, random_state=self.seed, n_jobs=1)
        self._rocket = run_interruptible(lambda: rocket.fit(_pad(x)), stop)
        self._mu = None
        f = self._features(_pad(x))
        self._mu, self._sd = f.mean(0), f.std(0) + 1e-6
        f = (f - self._mu) / self._sd
        present = np.unique(y)
        ridge = RidgeClassifierCV(alphas=self.alphas)
        self._ridge = run_interruptible(lambda: ridge.fit(f, y), stop)
        self._classes = present
        return FitStats(len(y), 1, time.perf_counter() - t0)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Ridge decision scores (N, n_classes); classes the training set lacked score far below."""
        x = _pad(np.asarray(x, np.float32))
        # Chunk by chunk, transform to scores: thousands of windows (a whole retrain's teacher pass) make
        # a feature matrix of hundreds of MB, and standardising it whole took seconds with no look at the stop.
        parts = [self._ridge.decision_function(self._standard(self._transform(x[s])))  # type: ignore[union-attr]
                 for s in chunks(len(x))]
        d = np.concatenate(parts) if parts else np.zeros((0, len(self._classes)), np.float32)
        if d.ndim == 1:  # two classes: sklearn returns one column, the second class's score
            d = np.stack([-d, d], axis=1)
        out = np.full((len(x), self.n_classes), -1e3, np.float32)
        out[:, self._classes] = d
        return out

    def calibrate(self, x: np.ndarray, y: np.ndarray) -> float:
        self.temperature = fit_temperature(self.scores(x), y)
        return self.temperature

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:
            return np.zeros((0, self.n_classes), np.float32)
        return softmax(self.scores(x), self.temperature)


def _pad(x: np.ndarray, min_len: int = 9) -> np.ndarray:
    if x.shape[-1] >= min_len:
        return x
    return np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, min_len - x.shape[-1])], mode="edge")


def minirocket(input_shape: tuple[int, ...], n_classes: int, n_kernels: int = 10_000) -> MiniRocketClassifier:
    """The default cloud model factory of window tasks (``models.cloud``; ``cloud_args = {n_kernels = N}``)."""
    return MiniRocketClassifier(input_shape, n_classes, n_kernels)
