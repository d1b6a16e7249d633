"""One valid instance of every JSON schema and binary container, for round-trip tests."""

from __future__ import annotations

import time

import numpy as np

from lepton_tasks import load_task
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch, FusedBatch, HardSample
from shared.protocol.topics import Topics

NOW = 1_790_000_000.0


def json_samples(t: Topics, device: str = "cam-1") -> list[tuple[object, schemas.Msg]]:
    task = load_task("digits")
    manifest = schemas.Manifest(task="digits", version=3, parent=2, sha256="a" * 64, size=1234,
                                artifact=str(t.artifact("digits", 3)), input=task.input_spec(),
                                outputs=[schemas.TensorSpec(name="feat", dtype="float32", shape=["batch", 32]),
                                         schemas.TensorSpec(name="probs", dtype="float32", shape=["batch", 10])],
                                metrics={"holdout_acc": 0.91}, reference="TFBU", created=NOW, expires=NOW + 86400)
    return [
        (t.status(device), schemas.Status(device=device, state="online", boot=17, versions={"lepton": "0.1.0"},
                                          models={"digits": 3}, groups=["site:garage"], ring=42.5, ts=NOW)),
        (t.telemetry(device), schemas.Telemetry(device=device, boot=17, ts=NOW, fps=12.5, latency_ms_p50=0.4,
                                                latency_ms_p99=1.2, uplink_bytes=1000, raw_bytes=90000,
                                                outbox_depth=0, escalation_ratio=0.1, frames=100, dropped_frames=0)),
        (t.pred(device, "front"), schemas.Prediction(device=device, stream="front", task="digits", sample=5, label=3,
                                                     confidence=0.93, source="edge", escalated=False,
                                                     model_version=3, ts=NOW)),
        (t.event(device, "front"), schemas.Event(device=device, stream="front", task="digits", sample=5, label=0,
                                                 name="0", confidence=0.99, boot=17, seq=4, ts=NOW)),
        (t.reply(device), schemas.Reply(task="digits", sample=5, label=3, confidence=0.97, model="cloud-v3",
                                        worker="w1", ts=NOW)),
        (t.custody(device), schemas.Custody(device=device, boot=17, ranges=[(0, 41), (43, 50)], ts=NOW)),
        (t.hub_ack("b1"), schemas.BatchAck(bridge="b1", boot=1_790_000_000_000, task="digits", ranges=[(1, 9)],
                                          worker="w1", ts=NOW)),
        (t.model_state(device), schemas.ModelState(device=device, task="digits", state="rejected", version=2,
                                                   offered=3, reason="sha256 mismatch", ts=NOW)),
        (t.cmd(device, "thresholds"), schemas.Command(name="thresholds", args={"threshold": 0.8}, ts=NOW)),
        (t.label(device, "front"), schemas.Labels(device=device, stream="front", task="digits",
                                                  items=[schemas.LabelItem(sample=5, label=3)], ts=NOW)),
        (t.hub_status(), schemas.ServiceStatus(service="bridge", id="b1", state="online", ts=NOW,
                                               counters={"in.feat": 3}, gauges={"queue.feat": 0.0})),
        (t.cloud_status("w1"), schemas.ServiceStatus(service="worker", id="w1", state="online", ts=NOW)),
        (t.release("digits"), release_sample()),
        (t.rollout_event("digits"), schemas.RolloutEvent(
            task="digits", release="digits-v3", seq=5, action="rollback", from_version=3, to_version=4,
            group="ring<26.7 (cam-4)", stage_from=0, stage_to=0, reason="worse than control", figures=figures_sample(),
            forced=True, ts=NOW)),
        (t.rollout_cmd("digits"), schemas.RolloutCommand(task="digits", id="cmd-1", action="pin", group="site:garage",
                                                         version=2, ts=NOW)),
        (t.model_version("digits", 3), manifest),
        (t.manifest("digits"), manifest),
    ]


def figures_sample() -> schemas.Figures:
    arm = dict(devices=1, samples=300, labelled=60, escalations=20, agree=15, frames=300, errors=0, swap_failures=0)
    return schemas.Figures(candidate=schemas.ArmFigures(version=3, correct=8, accuracy=0.13, latency_ms_p50=0.2, **arm),
                           control=schemas.ArmFigures(version=2, correct=57, accuracy=0.95, **arm), elapsed_s=12.5,
                           metric="accuracy", difference=-0.82, lower=-0.9, upper=-0.7, margin=0.02,
                           test="newcombe-score non-inferiority, 1-sided alpha=0.05")


def release_sample(seq: int = 5) -> schemas.Release:
    plan = schemas.ReleasePlan(stages=[schemas.Stage(share=20, ring_below=26.7), schemas.Stage(groups=["site:lab"]),
                                       schemas.Stage(share=100)])
    return schemas.Release(task="digits", release="digits-v3", seq=seq, state="running", candidate=3, control=2,
                           stage=0, plan=plan, pins=[schemas.Pin(group="site:garage", version=2)],
                           figures=figures_sample(), reason="started", started=NOW, updated=NOW)


def feature_batch(device: str = "cam-1", n: int = 4, seq: int = 1) -> FeatureBatch:
    rng = np.random.default_rng(seq)
    return FeatureBatch(device, "front", "digits", 17, seq, 3, np.arange(n, dtype=np.int64),
                        rng.random((n, 32), dtype=np.float32), rng.random((n, 10), dtype=np.float32),
                        np.full(n, time.time()))


def hard_sample(device: str = "cam-1", seq: int = 2) -> HardSample:
    rng = np.random.default_rng(seq)
    return HardSample(device, "front", "digits", 17, seq, 3, np.array([9], np.int64),
                      rng.random((1, 1, 8, 8), dtype=np.float32), rng.random((1, 32), dtype=np.float32),
                      rng.random((1, 10), dtype=np.float32), np.array([NOW]))


def fused_batch(n: int = 5) -> FusedBatch:
    rng = np.random.default_rng(0)
    return FusedBatch("digits", "b1", 1_700_000_000_000, 1, ("cam-1", "cam-2"), ("hour_sin", "hour_cos"), np.arange(n, dtype=np.int64),
                      (np.arange(n) % 2).astype(np.int32), rng.random((n, 32), dtype=np.float32),
                      np.array([1, -1, 3, -1, 5][:n], np.int64), np.arange(n, dtype=np.int64),
                      np.full(n, 0.5, np.float32), np.full(n, 3, np.int32), rng.random((n, 2), dtype=np.float32))
