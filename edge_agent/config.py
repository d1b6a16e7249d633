"""Agent configuration: one pydantic model, loaded from TOML + ``LEPTON_*`` env by shared.process.config.

Sources and decision policies are discriminated unions on ``type`` (Frigate-style), so a
config names what it wants and pydantic rejects fields that do not belong to that choice.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.protocol.schemas import GROUP_RE
from shared.protocol.topics import DEFAULT_ROOT, DEVICE_RE, SEGMENT_RE, check_root
from shared.transport.mqtt import MqttSettings


class _Cfg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---- sources --------------------------------------------------------------
class CameraSource(_Cfg):
    type: Literal["camera"] = Field(description="A local camera through cv2.VideoCapture(index).")
    index: int = Field(0, ge=0, description="Camera index (/dev/videoN).")
    width: int | None = Field(None, ge=1, description="Requested frame width; None keeps the camera's.")
    height: int | None = Field(None, ge=1, description="Requested frame height; None keeps the camera's.")
    fps: float | None = Field(None, gt=0, description="Pace capture to this rate; None reads as fast as the camera.")
    reconnect_s: float = Field(2.0, gt=0, description="First wait before reopening a camera that is unavailable; "
                                                       "doubles on each failed attempt ...")
    reconnect_max_s: float = Field(60.0, gt=0, description="... up to this wait (retries never stop).")


class VideoSource(_Cfg):
    type: Literal["video"] = Field(description="A video file read through cv2.VideoCapture(path).")
    path: Path = Field(description="Video file (MJPG .avi and mp4v .mp4 read back in opencv-headless).")
    loop: bool = Field(False, description="Start again at the end instead of finishing.")
    fps: float | None = Field(None, gt=0, description="Replay rate (frames/s); None is as fast as the pipeline.")


class StreamSource(_Cfg):
    type: Literal["stream"] = Field(description="An RTSP or HTTP(S) stream through cv2.VideoCapture(url).")
    url: str = Field(min_length=1, description="Stream URL, e.g. rtsp://cam.local/stream1.")
    fps: float | None = Field(None, gt=0, description="Pace capture to this rate; None reads as fast as it comes.")
    reconnect_s: float = Field(2.0, gt=0, description="First wait before reconnecting a stream that is down; "
                                                       "doubles on each failed attempt ...")
    reconnect_max_s: float = Field(60.0, gt=0, description="... up to this wait (retries never stop).")
    open_timeout_s: float = Field(10.0, gt=0, le=600, description="Give up opening the stream after this long "
                                                                  "(OpenCV CAP_PROP_OPEN_TIMEOUT_MSEC), then retry.")
    read_timeout_s: float = Field(10.0, gt=0, le=600, description="A stream that sends no frame for this long is "
                                                                  "closed and reconnected (CAP_PROP_READ_TIMEOUT_MSEC).")


class FolderSource(_Cfg):
    type: Literal["folder"] = Field(description="Images in a folder, in name order.")
    path: Path = Field(description="Folder of images.")
    pattern: str = Field("*", description="Glob of image files (cv2.imread decides what it can read).")
    loop: bool = Field(False, description="Start again after the last image.")
    fps: float | None = Field(None, gt=0, description="Replay rate (images/s); None is as fast as the pipeline.")


class ReplaySource(_Cfg):
    type: Literal["replay"] = Field(description="Replay a task's dataset split (a simulated device; needs "
                                                "the task pack installed); pred.ref = task:index.")
    task: str | None = Field(None, description="Task (name or spec path) whose dataset to replay; None: the "
                                               "agent's task.")
    split: Literal["stream", "holdout", "seed", "all"] = Field("stream", description="Which split to replay.")
    loop: bool = Field(True, description="Start again after the last sample.")
    fps: float | None = Field(None, gt=0, description="Replay rate (samples/s, realtime); None is as fast as possible.")
    limit: int | None = Field(None, ge=1, description="Stop after this many samples (per pass).")
    shuffle_seed: int | None = Field(None, description="Shuffle the split with this seed; None keeps split order.")
    part: int = Field(0, ge=0, description="Replay every `parts`-th sample starting at this one (several simulated "
                                           "devices share a stream, in order).")
    parts: int = Field(1, ge=1, description="How many devices share the split.")


class CsvSensorSource(_Cfg):
    type: Literal["csv"] = Field(description="Sliding windows over a CSV of sensor rows (time down, channels across).")
    path: Path = Field(description="CSV file; a non-numeric first row is taken as a header.")
    window: int = Field(100, ge=2, description="Samples per window.")
    hop: int = Field(50, ge=1, description="Samples between window starts.")
    columns: list[int] | None = Field(None, description="Column indexes to use as channels; None uses all.")
    loop: bool = Field(False, description="Start again at the end of the file.")
    fps: float | None = Field(None, gt=0, description="Windows per second; None is as fast as possible.")


SourceConfig = Annotated[CameraSource | VideoSource | StreamSource | FolderSource | ReplaySource | CsvSensorSource,
                         Field(discriminator="type")]


class CaptureSettings(_Cfg):
    mode: Literal["drop_oldest", "lossless"] = Field(
        "drop_oldest", description="drop_oldest: live sources never wait (oldest queued frame dropped, counted); "
                                   "lossless: capture blocks until the pipeline takes the frame (tests, benchmarks).")
    queue_size: int = Field(4, ge=1, le=10_000, description="Frames buffered between capture and inference.")
    exit_on_eof: bool = Field(False, description="Stop the agent when a finite source ends.")
    start_after_model: bool = Field(False, description="Hold capture until a model is serving (replays, benchmarks); "
                                                       "live sources should leave it off and count no_model frames.")


# ---- decision -----------------------------------------------------------------
class MaxProbPolicy(_Cfg):
    type: Literal["max_prob"] = Field(description="Escalate when the top class probability is below threshold.")
    threshold: float = Field(0.8, ge=0, le=1, description="Minimum top probability to act locally.")


class MarginPolicy(_Cfg):
    type: Literal["margin"] = Field(description="Escalate when top-1 minus top-2 probability is below threshold.")
    threshold: float = Field(0.3, ge=0, le=1, description="Minimum margin to act locally.")


class EntropyPolicy(_Cfg):
    type: Literal["entropy"] = Field(description="Escalate when normalised entropy (0..1) is above threshold.")
    threshold: float = Field(0.5, ge=0, le=1, description="Maximum normalised entropy to act locally.")


PolicyConfig = Annotated[MaxProbPolicy | MarginPolicy | EntropyPolicy, Field(discriminator="type")]


class DecisionSettings(_Cfg):
    policy: PolicyConfig | None = Field(None, description="Confidence policy that separates local from escalated "
                                        "samples. None: the task's default, from the model's signed manifest "
                                        "(max_prob 0.8 when it names none).")
    audit_rate: float = Field(0.02, ge=0, le=1, description="Fraction of confident samples escalated anyway (drift audit).")
    budget: float | None = Field(None, gt=0, le=1, description="Escalate at most this fraction of samples as uncertain: "
                                 "only the most uncertain of the last 500. None: the manifest's (no cap when it "
                                 "names none).")
    raw_every: int | None = Field(None, ge=0, description="One escalation in this many carries the model input; the "
                                  "others carry features only. None: the manifest's (every one when it names none).")
    rate_limit: float = Field(5.0, ge=0, description="Escalations per second allowed on average (token bucket).")
    burst: int = Field(20, ge=1, description="Token bucket size: escalations allowed in a burst.")
    reply_deadline_s: float = Field(2.0, gt=0, description="How long an escalated sample waits for the cloud's reply.")
    max_pending: int = Field(1000, ge=1, description="Escalations awaiting a reply at most; beyond, the oldest expires.")
    seed: int = Field(0, description="Seed of the audit sampler (deterministic audits for tests).")


class FeatureSettings(_Cfg):
    enabled: bool = Field(True, description="Publish feature batches on feat/.")
    batch_size: int = Field(32, ge=1, le=4096, description="Rows per batch; a batch is sent when full ...")
    max_age_s: float = Field(2.0, gt=0, description="... or when its oldest row is this old.")
    float16: bool = Field(True, description="Send features and scores as float16 (half the bytes, ~1e-3 error).")


class EventSettings(_Cfg):
    alert_classes: list[str] | None = Field(None, description="Class names that raise an event; None: those the "
                                                              "model's manifest names.")
    min_confidence: float = Field(0.0, ge=0, le=1, description="Minimum final confidence for an event.")


class SnapshotSettings(_Cfg):
    enabled: bool = Field(True, description="On an image task, publish the frame of an alert class's event as a "
                                            "retained JPEG on snapshot/ (docs/INTEGRATIONS.md).")
    quality: int = Field(75, ge=10, le=95, description="JPEG quality of a snapshot encoded on the device.")
    max_bytes: int = Field(128 * 1024, ge=4096, le=256 * 1024,
                           description="Largest snapshot sent; a bigger frame is re-encoded at lower quality, "
                                       "then dropped (counted snapshot.shed.too_large).")
    min_interval_s: float = Field(10.0, ge=0, description="Per alert class, seconds between two snapshots; "
                                                           "events in between send none (counted).")


class HomeAssistantSettings(_Cfg):
    enabled: bool = Field(False, description="Announce this device's entities to Home Assistant by MQTT "
                                             "discovery (retained configs; docs/INTEGRATIONS.md).")
    prefix: str = Field("homeassistant", description="Home Assistant's discovery prefix (its MQTT integration's "
                                                      "setting; the generated broker ACL assumes the default).")
    hold_s: int = Field(10, ge=1, le=3600, description="Seconds an alert class's binary sensor stays on after the "
                                                        "class's last event.")

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, v: str) -> str:
        return check_root(v)


class OutboxSettings(_Cfg):
    path: Path | None = Field(None, description="SQLite file; None puts outbox.sqlite in state_dir.")
    max_bytes: int = Field(64 * 1024 * 1024, ge=1024, description="Payload bytes kept at most; overflow policy beyond.")
    ttl_s: dict[Literal["event", "hard", "feat", "telemetry"], float] = Field(
        default_factory=lambda: {"event": 7 * 86400.0, "hard": 3600.0, "feat": 86400.0, "telemetry": 3600.0},
        description="Per class: seconds a message may wait before it is dropped (counted).")
    inflight: int = Field(32, ge=1, le=1000, description="Outbox messages published and not yet acknowledged, at most.")
    custody: bool = Field(True, description="Keep a QoS 1 message after the broker's PUBACK until the bridge's custody "
                                            "message says it reached its final fate (docs/PROTOCOL.md, Delivery "
                                            "guarantee). Off: delete on PUBACK, safe only with a broker that "
                                            "acknowledges from disk (EMQX durable sessions, HiveMQ).")
    custody_timeout_s: float = Field(30.0, gt=0, description="Send a PUBACKed message again when no custody came "
                                                             "within this long (then twice as long, and so on).")
    custody_timeout_max_s: float = Field(600.0, gt=0, description="Longest wait between two sends of one message.")


class ModelSettings(_Cfg):
    dir: Path | None = Field(None, description="Where accepted models live; None puts models/ in state_dir.")
    public_key: Path | None = Field(None, description="Ed25519 public key (PEM) that every model manifest must be signed "
                                                  "by; required unless allow_unsigned is true.")
    allow_unsigned: bool = Field(False, description="Run models without checking any signature (development only; "
                                                    "logs a warning at start). Needs public_key unset.")
    initial_model: Path | None = Field(None, description="ONNX file to serve before any model arrives.")
    initial_manifest: Path | None = Field(None, description="Manifest JSON describing initial_model.")
    fetch_timeout_s: float = Field(10.0, gt=0, description="Wait for a retained artifact at most this long.")
    max_artifact_bytes: int = Field(8 * 1024 * 1024, ge=1, description="Refuse manifests declaring larger artifacts.")
    artifact_attempts: int = Field(5, ge=1, le=1000, description="Artifacts tried per model version: after one that "
                                   "never came or did not match the signed sha256, newly published bytes on the "
                                   "artifact topic are tried again, up to this many in all.")
    intra_op_threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads (1 on a Pi).")
    keep_versions: int = Field(2, ge=2, description="Model versions kept on disk (current + previous at least).")

    @model_validator(mode="after")
    def _pair(self) -> ModelSettings:
        if (self.initial_model is None) != (self.initial_manifest is None):
            raise ValueError("initial_model and initial_manifest go together")
        return self


class TelemetrySettings(_Cfg):
    interval_s: float = Field(10.0, gt=0, description="Seconds between telemetry messages.")
    jpeg_every: int = Field(10, ge=1, description="JPEG-encode every Nth frame to estimate raw uplink cost.")
    jpeg_quality: int = Field(90, ge=10, le=100, description="JPEG quality of that estimate.")


class AgentConfig(_Cfg):
    ENV_ROLE: ClassVar[str] = "agent"  # LEPTON_AGENT__* env vars (shared.process.config)

    device: str = Field(pattern=DEVICE_RE.pattern, description="Device id ([a-z0-9-]); also the MQTT client id.")
    root: str = Field(DEFAULT_ROOT, description="Topic root.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    task: str = Field(pattern=SEGMENT_RE.pattern, description="Name of the task this agent serves (its topics); "
                                                              "classes, inputs and preprocessing come with the "
                                                              "signed model manifest, so no task table lives here.")
    stream: str = Field("cam", pattern=SEGMENT_RE.pattern, description="Stream name in pred/feat/hard/event topics.")
    groups: list[Annotated[str, Field(pattern=GROUP_RE)]] = Field(
        default_factory=list, max_length=64, description="Groups this device belongs to for staged rollouts, e.g. "
                                                         "site:garage, ring:canary ([a-z0-9_.:-]); reported in its "
                                                         "birth message. It is also always in device:<id>.")
    source: SourceConfig = Field(description="Where samples come from; `type` picks the kind.")
    capture: CaptureSettings = Field(default_factory=CaptureSettings, description="Capture queue behaviour.")
    decision: DecisionSettings = Field(default_factory=DecisionSettings, description="Act locally or escalate.")
    features: FeatureSettings = Field(default_factory=FeatureSettings, description="Feature batching on feat/.")
    events: EventSettings = Field(default_factory=EventSettings, description="Alert events on event/.")
    snapshots: SnapshotSettings = Field(default_factory=SnapshotSettings, description="The frame of an alert, "
                                                                                      "retained on snapshot/.")
    home_assistant: HomeAssistantSettings = Field(default_factory=HomeAssistantSettings,
                                                  description="Home Assistant MQTT discovery (off by default).")
    outbox: OutboxSettings = Field(default_factory=OutboxSettings, description="Store and forward of QoS 1 data.")
    model: ModelSettings = Field(default_factory=ModelSettings, validate_default=True,
                                 description="Model verification and storage.")
    telemetry: TelemetrySettings = Field(default_factory=TelemetrySettings, description="Telemetry cadence.")
    state_dir: Path = Field(Path("var/edge"), description="Directory for boot state, outbox and models.")

    @field_validator("model")
    @classmethod
    def _signed(cls, m: ModelSettings) -> ModelSettings:
        # A device must not run whatever model anyone who may publish on its manifest topic puts there.
        if m.public_key is None and not m.allow_unsigned:
            raise ValueError("no model.public_key: this agent runs only models signed by your stack's key. Set "
                             "model.public_key to its signing public key (`lepton up` writes it to var/up/RUN/keys/signing.pub; "
                             "`lepton keys init` makes one, `lepton provision` puts it in a device bundle), or set "
                             "model.allow_unsigned = true to run unsigned models (development only)")
        if m.public_key is not None and m.allow_unsigned:
            raise ValueError("model.public_key and model.allow_unsigned = true contradict each other: keep the key "
                             "(manifests must be signed) or drop it (anything goes)")
        return m

    @model_validator(mode="after")
    def _root(self) -> AgentConfig:
        check_root(self.root)
        return self

    @property
    def outbox_path(self) -> Path:
        return self.outbox.path or self.state_dir / "outbox.sqlite"

    @property
    def model_dir(self) -> Path:
        return self.model.dir or self.state_dir / "models"
