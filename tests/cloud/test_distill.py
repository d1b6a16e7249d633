"""The cloud teaches the edge: with a fixed label budget, the edge learns from the cloud's answers on raw
samples nobody labelled, and every release is calibrated. Directions, not figures."""

from __future__ import annotations

import numpy as np

from cloud_worker.models import train
from cloud_worker.models.calibrate import _nll, ece, fit_temperature, softmax
from lepton_tasks import load_task

from .helpers import answered
from .test_learning import learner


def test_with_no_new_label_the_edge_improves_from_the_clouds_answers(tmp_path, keydir, registry_copy):
    lr, published = learner(tmp_path, keydir, registry_copy, training={"whole_min_raw": 100})
    v1 = lr.deployed_acc
    assert lr.cloud.accuracy > v1  # the cloud sees the frame at twice the resolution, with a bigger model
    stream = load_task("digits").dataset().stream[:400]

    answered(lr, "digits", stream)  # escalations with their samples; nobody labels them
    d = lr.retrain("manual")

    assert d["data"]["raw"] == 0 and d["data"]["pseudo"] == 400 and d["data"]["distilled"] == 520
    assert d["candidate_acc"] > v1, d  # taught by the cloud alone
    assert d["published"] and lr.version == 2


def test_temperature_scaling_fixes_an_overconfident_model():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(5, 0.7), size=3000)
    y = np.array([rng.choice(5, p=row) for row in p])
    logits = np.log(p) * 4.0  # four times too sure of itself
    temp = fit_temperature(logits, y)
    assert 3.0 < temp < 5.0
    assert ece(softmax(logits, temp), y) < 0.5 * ece(softmax(logits, 1.0), y)


def test_every_release_is_calibrated_on_the_holdout(tmp_path, keydir, registry_copy):
    lr, _ = learner(tmp_path, keydir, registry_copy)
    logits = train.predict_logits(lr.edge, lr.hold_x, lr.device)
    temp = float(lr.edge.temperature)
    assert temp != 1.0
    # The temperature is the holdout likelihood's best: better than none, and than its neighbours.
    assert _nll(logits, lr.hold_y, temp) <= min(_nll(logits, lr.hold_y, t) for t in (1.0, temp * 0.9, temp * 1.1))
    m = lr.deployed.record["metrics"]
    assert abs(m["temperature"] - temp) < 1e-6 and abs(m["ece"] - ece(softmax(logits, temp), lr.hold_y)) < 1e-6
    # The exported graph applies it: the agent's probabilities are the calibrated ones.
    from .helpers import ort_run

    _, probs = ort_run(lr.deployed.onnx, lr.hold_x[:16])
    np.testing.assert_allclose(probs, softmax(logits[:16], temp), atol=1e-4)


def test_a_refused_whole_candidate_is_where_the_next_one_starts(tmp_path, keydir, registry_copy):
    # Fine-tuning a weak edge for a dozen epochs at a time gets nowhere if each candidate starts again
    # from the deployed model: candidates go on from the last one, and a new deployed edge restarts that.
    lr, published = learner(tmp_path, keydir, registry_copy, training={"whole_min_raw": 100},
                            gate={"margin": 0.9})  # nothing passes the gate
    answered(lr, "digits", load_task("digits").dataset().stream[:200])
    bases, made = [], []
    whole = lr.candidates.whole

    def spy(base, ws, rng, label_noise=False):
        bases.append(base)
        made.append(whole(base, ws, rng, label_noise))
        return made[-1]

    lr.candidates.whole = spy
    deployed = lr.edge

    first = lr.retrain("manual")
    second = lr.retrain("manual")
    bad = lr.retrain("manual", label_noise=True)  # a deliberately bad candidate is never built upon
    third = lr.retrain("manual")

    assert not any(d["published"] for d in (first, second, bad, third)) and lr.version == 1
    assert bases[0] is deployed and bases[1] is made[0].net and bases[2] is made[1].net
    assert bases[3] is made[1].net
    lr.sync()  # nothing newer: the chain goes on
    assert lr.whole_base is made[3].net
    lr._adopt(lr.deployed)  # a new deployed edge (published, promoted, rolled back) starts it again
    assert lr.whole_base is None
