"""WorkerConfig: everything ``lepton-worker`` reads, from TOML + ``LEPTON_WORKER__*`` / ``LEPTON_*`` environment."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shared.process.metrics import MetricsSettings, with_port
from shared.protocol.topics import DEFAULT_ROOT, check_root, check_segment
from shared.security.statedir import state_dir
from shared.transport.mqtt import MqttSettings


class DeviceUnavailable(RuntimeError):
    """The configured torch device does not exist on this host."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerSettings(_Strict):
    min_new_labels: int = Field(200, ge=1, description="Retrain once this many new ground-truth rows arrived.")
    interval_s: float = Field(600.0, gt=0, description="Retrain after this long if any new labelled row arrived.")
    cooldown_s: float = Field(5.0, ge=0, description="Never retrain more often than this.")
    drift_drop: float = Field(0.10, gt=0, le=1, description="Retrain when audited edge accuracy (labelled field "
                                                            "rows) falls this far below what the edge's "
                                                            "calibrated confidence on those rows expected.")
    drift_min_rows: int = Field(50, ge=1, description="Audited rows (edge_label vs label) needed to judge drift.")


class GateSettings(_Strict):
    margin: float = Field(0.005, ge=0, le=1, description="Holdout accuracy a candidate must add to be published.")
    degraded_accept: bool = Field(True, description="When the deployed model has degraded in the field, publish "
                                                    "a candidate that is at least as good on the holdout, or one "
                                                    "that is better on the recent labelled field rows and loses at "
                                                    "most max_holdout_loss on the holdout.")
    max_holdout_loss: float = Field(0.05, ge=0, le=1, description="Holdout accuracy a candidate may lose when it "
                                                                  "wins on recent field rows under drift.")
    field_min_rows: int = Field(60, ge=1, description="Recent labelled field rows needed to judge a candidate by them.")
    field_rows: int = Field(300, ge=10, description="How many of the most recent labelled field rows the gate keeps.")


class BufferSettings(_Strict):
    capacity: int = Field(20000, ge=10, description="Feature rows kept (class-balanced) for head training.")
    raw_capacity: int | None = Field(None, ge=10, description="Raw samples kept (class-balanced, ground truth "
                                                             "first) for the cloud model and whole-model edge "
                                                             "training, each with its edge and cloud inputs. "
                                                             "Default by task kind: 3000 frames (a 320x240 "
                                                             "frame: ~100 KB in memory), 20000 windows (a few KB "
                                                             "each): the cloud learns from every labelled window "
                                                             "a stream of that size gives it.")
    pending_hard: int = Field(5000, ge=1, description="Escalations' cloud answers kept while waiting for a label.")
    pseudo_confidence: float = Field(0.95, gt=0, le=1, description="Cloud confidence needed to pseudo-label a "
                                                                   "feature row.")
    pseudo_weight: float = Field(0.5, gt=0, le=1, description="Loss weight of a row the edge learns from the "
                                                              "cloud's answer alone (ground truth: 1).")
    learned_keys: int = Field(200_000, ge=100, description="(device, sample) rows remembered as learned from, so "
                                                           "copies are skipped; saved with the buffer.")


RAW_CAPACITY = {"image": 3000, "window": 20000}


def raw_capacity(buffer: BufferSettings, kind: str) -> int:
    """The raw store's size: the configured one, or the task kind's default (RAW_CAPACITY)."""
    return buffer.raw_capacity or RAW_CAPACITY.get(kind, RAW_CAPACITY["image"])


class TrainSettings(_Strict):
    bootstrap_epochs: int = Field(60, ge=1, description="Epochs for version 1 on the seed set.")
    cloud_epochs: int = Field(60, ge=1, description="Epochs for a torch cloud model trained from scratch (the "
                                                   "first one, on the seed set).")
    cloud_refresh_epochs: int = Field(10, ge=1, description="Epochs of each refresh of a torch cloud model: "
                                                           "fine-tuned from the last one on everything labelled, so "
                                                           "what it learned adds up over refreshes.")
    cloud_lr: float = Field(3e-3, gt=0, description="Peak learning rate of the cloud model's one-cycle schedule "
                                                   "(a third of it for refreshes).")
    cloud_refresh_rows: int = Field(40, ge=1, description="Labelled raw samples since the cloud model's last fit "
                                                          "that make a retrain refresh it first.")
    cloud_max_rows: int = Field(4000, ge=10, description="At most this many labelled raw samples per cloud fit "
                                                         "from scratch (a random subset beyond).")
    cloud_refresh_max_rows: int = Field(800, ge=10, description="At most this many per refresh of a network: "
                                                                "the newest half and a random half of the "
                                                                "rest (it remembers what earlier refreshes "
                                                                "taught it).")
    cloud_max_holdout_loss: float = Field(0.02, ge=0, le=1, description="A refreshed cloud model replaces the "
                                                                       "last one unless it loses more than this on "
                                                                       "the holdout.")
    distill: float = Field(0.5, ge=0, le=1, description="Weight of the cloud's answer in a labelled raw sample's "
                                                        "target when the edge learns (the rest: the label). "
                                                        "Unlabelled raw samples are learned from the cloud's "
                                                        "answer alone.")
    head_epochs: int = Field(60, ge=1, description="Epochs for a head-only fine-tune on features.")
    whole_epochs: int = Field(12, ge=1, description="Epochs for a whole-model edge candidate (fine-tuned from the "
                                                   "deployed model).")
    whole_min_raw: int = Field(100, ge=1, description="Raw samples (beyond the seed) the worker must hold before "
                                                      "it trains the whole edge model instead of its head.")
    lr: float = Field(3e-3, gt=0, description="AdamW learning rate for edge training (a third of it for "
                                              "whole-model fine-tunes).")
    batch: int = Field(32, ge=1, description="Mini-batch size for raw-input training.")
    seed: int = Field(0, description="Random seed: training is deterministic on one device.")
    threads: int = Field(1, ge=0, description="torch CPU threads (0 = torch's default, one per core). Measured "
                                              "10-25x faster at one than at two on a busy 2-core box "
                                              "(docs/WORKER.md).")


class ExportSettings(_Strict):
    reference_samples: int = Field(8, ge=1, le=64, description="Real holdout samples carried in the manifest.")
    parity_tolerance: float = Field(1e-4, gt=0, description="Max |torch - onnxruntime| accepted at export.")
    tolerance: float = Field(1e-3, gt=0, description="Tolerance written into the manifest for the agents.")
    ttl_s: float = Field(30 * 86400.0, gt=0, description="Manifest lifetime: expires = created + ttl.")
    keep_artifacts: int = Field(2, ge=1, description="Retained artifacts kept on the broker; older ones are cleared.")
    opset: int = Field(17, ge=13, le=21, description="ONNX opset for torch.onnx.export.")
    publish_timeout_s: float = Field(10.0, gt=0, description="Wait for the broker's PUBACK of artifact and manifest.")


class InferSettings(_Strict):
    queue: int = Field(2000, ge=1, description="Escalations waiting to be answered; beyond, the oldest is dropped.")
    max_batch: int = Field(256, ge=1, description="Rows answered in one forward pass.")


class RolloutSettings(_Strict):
    """Staged rollout of new versions (docs/WORKER.md, Staged rollout). Off: every version goes to the fleet."""

    enabled: bool = Field(False, description="Release each new candidate in stages, judged in the field, instead "
                                             "of publishing it to the whole fleet at once.")
    stages: list[str] = Field(default_factory=lambda: ["5%", "25%", "100%"], min_length=1, max_length=16,
                              description="Stages in order: 'N%' (a share of the fleet by hash ring), a group name "
                                          "(site:garage), or both joined by '+'. Each includes the ones before; "
                                          "the last one should be 100%.")
    metric: Literal["accuracy", "cloud_agreement"] = Field("accuracy", description="The field metric that decides.")
    margin: float = Field(0.02, ge=0, le=1, description="Non-inferiority margin on the metric.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="One-sided significance level of the decision test.")
    min_samples: int = Field(200, ge=1, description="Samples per arm before any decision.")
    min_labels: int = Field(100, ge=1, description="Labelled samples (answered escalations for cloud_agreement) per "
                                                   "arm before any decision.")
    min_stage_s: float = Field(60.0, ge=0, description="No decision before a stage has run this long.")
    max_stage_s: float = Field(3600.0, gt=0, description="Roll back a stage that has no decision by then.")
    max_escalation_increase: float = Field(0.05, ge=0, le=1, description="Escalation-rate increase that rolls back.")
    max_latency_ratio: float = Field(2.0, ge=1, description="Median latency ratio (plus 1 ms) that rolls back.")
    max_error_rate_increase: float = Field(0.01, ge=0, le=1, description="Error-rate increase that rolls back.")
    max_swap_failures: int = Field(1, ge=1, description="Devices failing to load the candidate that roll back.")
    tick_s: float = Field(1.0, ge=0, description="Seconds between two looks of the judge (0: every learner loop).")
    inject_bad_release: int = Field(0, ge=0, description="Demo: the Nth release of this registry is trained on "
                                                         "wrong labels (each class named as the next) and released although the holdout gate "
                                                         "refuses it (its event says so). 0: never.")

    @field_validator("stages")
    @classmethod
    def _stages(cls, v: list[str]) -> list[str]:
        from shared.model.stages import parse_stage

        for item in v:
            parse_stage(item)
        return v


class WorkerConfig(_Strict):
    ENV_ROLE: ClassVar[str] = "worker"  # LEPTON_WORKER__* env vars (shared.process.config)

    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    root: str = Field(DEFAULT_ROOT, description="Topic root.")
    worker_id: str = Field("worker-1", description="Instance id (topic segment); cloud/{id}/status.")
    tasks: list[str] = Field(default_factory=lambda: ["digits"], min_length=1,
                             description="Tasks served: names (shipped specs, installed task packs) or paths of "
                                         "task spec files (docs/TASKS.md).")
    registry: Path = Field(Path("var/registry"), description="Model registry directory (one folder per task).")
    signing_key: Path = Field(default_factory=lambda: state_dir() / "keys" / "signing.key",
                              description="Ed25519 private key (PEM) manifests are signed with; never shipped to "
                                          "devices. Default: where `lepton keys init` puts it, "
                                          "$XDG_STATE_HOME/lepton/keys (~/.local/state/lepton/keys).")
    public_key: Path | None = Field(None, description="Public key; when set, every signed manifest is verified "
                                                      "against it before publishing.")
    share_group: str = Field("workers", description="MQTT shared-subscription group of the workers.")
    learn: bool = Field(True, description="Consume hub/batch and retrain. Run one learner per task; extra "
                                          "workers can serve escalations only (learn = false).")
    answer: bool = Field(True, description="Consume hub/infer and answer escalations.")
    bootstrap_missing: bool = Field(True, description="On start, train and publish v1 for tasks without a model.")
    republish_on_start: bool = Field(True, description="On start, republish the latest version (retained) so "
                                                       "a broker that lost its store heals.")
    torch_device: Literal["auto", "cpu", "cuda"] = Field("auto", description="Torch device: auto = CUDA when present. (Not `device`: LEPTON_DEVICE names an agent.)")
    batch_queue: int = Field(256, ge=1, description="Fused batches waiting for the learner; beyond, oldest dropped "
                                                    "(not acknowledged, so the bridge sends them again).")
    ack_interval_s: float = Field(2.0, gt=0, description="Seconds between saving the learning buffer and "
                                                         "acknowledging the fused batches it now holds (hub/ack).")
    status_interval_s: float = Field(10.0, gt=0, description="Seconds between retained status updates.")
    stop_ingest_s: float = Field(2.0, ge=0, description="On stop, seconds spent taking in the batches already "
                                                        "queued before the last save and ack; the rest go "
                                                        "unacknowledged and the bridge sends them again.")
    triggers: TriggerSettings = Field(default_factory=TriggerSettings, description="When to retrain.")
    gate: GateSettings = Field(default_factory=GateSettings, description="When to publish a candidate.")
    buffer: BufferSettings = Field(default_factory=BufferSettings, description="Replay buffer sizes and weights.")
    training: TrainSettings = Field(default_factory=TrainSettings, description="Training hyper-parameters.")
    export: ExportSettings = Field(default_factory=ExportSettings, description="ONNX export and manifest settings.")
    infer: InferSettings = Field(default_factory=InferSettings, description="Escalation answering.")
    rollout: RolloutSettings = Field(default_factory=RolloutSettings, description="Staged rollout of new versions.")
    metrics: MetricsSettings = Field(default_factory=with_port(9852), description="Prometheus /metrics endpoint "
                                                                                   "(docs/INTEGRATIONS.md).")

    @field_validator("root")
    @classmethod
    def _root(cls, v: str) -> str:
        return check_root(v)

    @field_validator("worker_id", "share_group")
    @classmethod
    def _segment(cls, v: str) -> str:
        return check_segment(v, "id")

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, v: list[str]) -> list[str]:
        from lepton_tasks import TaskSpecError, locate

        for ref in v:
            try:
                locate(ref)
            except TaskSpecError as exc:
                raise ValueError(str(exc)) from None
        if len(set(v)) != len(v):
            raise ValueError("tasks listed twice")
        return v
