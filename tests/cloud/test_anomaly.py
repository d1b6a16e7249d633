"""Anomaly detectors on synthetic windows: they separate anomalies, trimming drops contamination, the AE exports."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cloud_worker.models.anomaly import AcfKNN, AnomalyError, ConvAE, ConvAutoencoder, RocketKNN
from cloud_worker.releasing.export import check_onnx, ort_session, to_onnx
from shared.model import model_contract as mc

T = 96


def normals(n: int, rng: np.random.Generator) -> np.ndarray:
    """Sines of 2-3 cycles per window, random phase and amplitude, a little noise."""
    t = np.linspace(0, 1, T)
    f, ph, a = rng.uniform(2, 3, (n, 1)), rng.uniform(0, 2 * np.pi, (n, 1)), rng.uniform(0.9, 1.1, (n, 1))
    return (a * np.sin(2 * np.pi * f * t + ph) + 0.05 * rng.normal(size=(n, T)))[:, None, :].astype(np.float32)


def bumps(n: int, rng: np.random.Generator) -> np.ndarray:
    """Normal windows with a sharp bump somewhere: the anomaly."""
    x = normals(n, rng)
    at = rng.integers(10, T - 10, n)
    x[np.arange(n), 0, at] += 2.5
    x[np.arange(n), 0, at + 1] -= 2.5
    return x


def chirps(n: int, rng: np.random.Generator) -> np.ndarray:
    """A second kind of anomaly, one tight cluster: fast sines (9 cycles), nearly alike."""
    t = np.linspace(0, 1, T)
    return (np.sin(2 * np.pi * 9 * t + rng.uniform(0, 0.3, (n, 1))) + 0.02 * rng.normal(size=(n, T))
            )[:, None, :].astype(np.float32)


def auroc(det, normal: np.ndarray, anomalous: np.ndarray) -> float:
    s = np.concatenate([det.score(normal), det.score(anomalous)])
    return float(roc_auc_score(np.r_[np.zeros(len(normal)), np.ones(len(anomalous))], s))


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return {"train": normals(300, rng), "cal": normals(200, rng), "test": normals(200, rng),
            "bumps": bumps(100, rng), "chirps": chirps(100, rng), "contam": chirps(12, rng)}


def test_knn_scores_separate_anomalies_and_the_threshold_holds(data):
    det = RocketKNN(k=20, trim=0.0, n_kernels=2_000).fit(data["train"])
    assert auroc(det, data["test"], data["bumps"]) > 0.95  # typically 1.0: a bump is far from every sine
    assert auroc(det, data["test"], data["chirps"]) > 0.95
    t = det.calibrate(data["cal"], 0.05)
    assert t.guaranteed
    assert det.predict(data["test"]).mean() < 0.15  # 5 % asked; 200 windows leave room for chance, not for a bug
    assert det.predict(data["bumps"]).mean() > 0.8


def test_trimming_with_a_wide_neighbourhood_drops_the_contamination_that_hides_its_own_kind(data):
    train = np.concatenate([data["train"], data["contam"]])  # 12 unlabelled chirps, 3.8 % of the stream
    is_contam = np.r_[np.zeros(len(data["train"]), bool), np.ones(len(data["contam"]), bool)]
    naive = RocketKNN(k=5, trim=0.0, n_kernels=2_000).fit(train)
    narrow = RocketKNN(k=5, trim=0.05, n_kernels=2_000).fit(train)
    robust = RocketKNN(k=20, trim=0.05, n_kernels=2_000).fit(train)
    # 12 alike chirps are each other's 5 nearest, so k = 5 scores them normal even leave-one-out and
    # trimming by it keeps them; with k = 20 > 12 their neighbourhoods reach the sines and all 12 go
    assert is_contam[narrow.kept].sum() >= 8
    assert is_contam[robust.kept].sum() == 0 and len(robust.kept) == len(train) - 15
    for det in (naive, robust):
        det.calibrate(data["cal"], 0.05)
    assert naive.predict(data["chirps"]).mean() < 0.2  # fresh chirps hide among the contamination
    assert robust.predict(data["chirps"]).mean() > 0.9


def test_knn_refuses_windows_it_cannot_score(data):
    det = RocketKNN(k=3, n_kernels=500)
    with pytest.raises(AnomalyError, match="at least 5 needed"):
        det.fit(data["train"][:4])
    with pytest.raises(AnomalyError, match="not fitted"):
        det.score(data["test"])
    det.fit(data["train"][:40])
    with pytest.raises(AnomalyError, match="do not fit"):
        det.score(data["test"][:, :, :50])
    bad = data["test"][:3].copy()
    bad[0, 0, 5] = np.nan
    with pytest.raises(AnomalyError, match="NaN"):
        det.score(bad)
    with pytest.raises(AnomalyError, match="calibrate"):
        det.predict(data["test"])


def test_the_autoencoder_separates_bumps_and_exports_its_score_to_onnx(data):
    det = ConvAutoencoder(epochs=40, trim=0.05).fit(data["train"])
    assert auroc(det, data["test"], data["bumps"]) > 0.9  # the bump cannot be reconstructed from a sine's code
    onnx_bytes = to_onnx(det.net, (1, T))
    assert len(onnx_bytes) < 100_000
    x = np.concatenate([data["test"][:8], data["bumps"][:8]])
    feat, score, diff = check_onnx(onnx_bytes, det.net, x, tol=1e-4)  # raises when ONNX Runtime disagrees
    assert score.shape == (16, 1) and feat.shape == (16, 4) and diff <= 1e-4  # a 4-channel code
    ort_feat, ort_score = ort_session(onnx_bytes).run(list(mc.ANOMALY_OUTPUTS), {mc.INPUT: x})
    assert np.allclose(ort_score.ravel(), det.score(x), rtol=1e-4, atol=1e-6)
    assert ConvAE.outputs == ("feat", "score")


def test_the_acf_knn_scores_in_its_graph_and_exports_with_parity():
    # noise whose spectrum is the normal thing: AR(1) at phi 0.8 normal, 0.2 anomalous
    rng = np.random.default_rng(1)

    def ar(n: int, phi: float) -> np.ndarray:
        e = rng.normal(size=(n, 200))
        x = np.zeros_like(e)
        for t in range(1, 200):
            x[:, t] = phi * x[:, t - 1] + e[:, t]
        return x[:, None, :].astype(np.float32)

    det = AcfKNN(lags=10, k=10, trim=0.05, bank=100).fit(ar(300, 0.8))
    normal, odd = ar(100, 0.8), ar(100, 0.2)
    assert auroc(det, normal, odd) > 0.95  # lag-1 autocorrelation 0.8 against 0.2: far apart
    onnx_bytes = to_onnx(det.net, (1, 200))
    x = np.concatenate([normal[:8], odd[:8]])
    _, score, diff = check_onnx(onnx_bytes, det.net, x, tol=1e-4)
    assert np.allclose(score.ravel(), det.score(x), rtol=1e-5) and diff <= 1e-4
    assert len(det.kept) == 285  # 5 % of 300 trimmed
