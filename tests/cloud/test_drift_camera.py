"""The drift detector on the camera's real stream: an edge model trained on the seed, as version 1 is,
reports confidences and features for day frames, then for night frames; the detector stays quiet by
day and fires within two windows of nightfall. The shift is large (dark, blue, noisy frames move the
features by many reference standard deviations), so the verdict does not hinge on the model's exact
figures."""

from __future__ import annotations

import numpy as np
import torch

from cloud_worker.config import TrainSettings
from cloud_worker.models import nets, train
from cloud_worker.models.calibrate import softmax
from lepton_tasks import load_task
from shared.model.drift import DriftDetector

W, REF, DAY_AFTER, NIGHT = 25, 200, 100, 100


def test_day_then_night_on_the_camera_stream():
    cpu = torch.device("cpu")
    task = load_task("camera")
    d = task.dataset()
    t = TrainSettings()
    edge = nets.build_edge(task)
    train.fit(edge, task.preprocess_all(d.raw[d.seed]), d.y[d.seed], epochs=t.bootstrap_epochs, lr=t.lr,
              batch=t.batch, device=cpu, seed=0)
    idx = np.concatenate([d.stream[:REF + DAY_AFTER], d.stream[d.drift_at:d.drift_at + NIGHT]])
    x = task.preprocess_all(d.raw[idx])
    feats = train.features(edge, x, cpu)
    conf = softmax(train.predict_logits(edge, x, cpu)).max(1)
    det = DriftDetector(window=W, reference=REF, alpha=1e-3, seed=0)
    fired = det.update_many(conf, feats, conf < task.decision_defaults().threshold)
    assert fired, "no alarm at nightfall"
    assert fired[0].sample > REF + DAY_AFTER, f"false alarm by day at sample {fired[0].sample}"
    assert fired[0].sample <= REF + DAY_AFTER + 2 * W
    assert "features" in fired[0].channels
