"""BridgeConfig: everything the bridge can be told, validated before anything connects."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from hub_bridge.classes import CLASS_NAMES
from shared.process.metrics import MetricsSettings
from shared.protocol.topics import DEFAULT_ROOT, SEGMENT_RE, check_root
from shared.transport.mqtt import MqttSettings

CONTEXT_BUILTINS = ("hour_sin", "hour_cos", "dow_sin", "dow_cos", "late_label", "events_1m")
TELEMETRY_FIELDS = ("fps", "latency_ms_p50", "latency_ms_p99", "outbox_depth", "escalation_ratio", "dropped_frames")


class ClassPolicy(BaseModel):
    """How one priority class is queued, aged and shed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capacity: int = Field(ge=1, description="Most messages of this class waiting in the bridge.")
    ttl: float = Field(gt=0, le=86400, description="Seconds a message may wait before it is expired (counted); also "
                                                    "the MQTT 5 message expiry set on what the bridge publishes for it.")
    overflow: Literal["drop_oldest", "drop_newest"] = Field(
        "drop_oldest", description="Which message a full queue sheds: the oldest queued, or the one arriving.")
    share: float = Field(0.0, ge=0, lt=1, description="Guaranteed fraction of dispatches while this class is "
                                                       "backlogged behind higher classes (anti-starvation).")
    max_bytes: int = Field(4 * 1024 * 1024, ge=64, description="Larger payloads are rejected as oversized.")


class ClassPolicies(BaseModel):
    """One policy per class, highest priority first."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event: ClassPolicy = Field(ClassPolicy(capacity=10_000, ttl=10, max_bytes=16 * 1024),
                               description="Alerts (edge/+/event/+).")
    escalation: ClassPolicy = Field(ClassPolicy(capacity=5_000, ttl=10, share=0.10),
                                    description="Hard samples (edge/+/hard/+), forwarded to hub/infer/{task}.")
    label: ClassPolicy = Field(ClassPolicy(capacity=10_000, ttl=60, share=0.05, max_bytes=256 * 1024),
                               description="Ground truth (label/+/+).")
    feature: ClassPolicy = Field(ClassPolicy(capacity=20_000, ttl=30, share=0.05),
                                 description="Feature batches (edge/+/feat/+), fused into hub/batch/{task}.")
    telemetry: ClassPolicy = Field(ClassPolicy(capacity=5_000, ttl=10, share=0.02, max_bytes=64 * 1024),
                                   description="Telemetry and model state (edge/+/telemetry, edge/+/model).")

    def ordered(self) -> list[ClassPolicy]:
        return [getattr(self, n) for n in CLASS_NAMES]

    @model_validator(mode="before")
    @classmethod
    def _partial_overrides(cls, data: Any) -> Any:
        """`[classes.feature] capacity = 5000` (or LEPTON_CLASSES__FEATURE__CAPACITY) keeps the other defaults."""
        if not isinstance(data, dict):
            return data
        out = dict(data)
        for name, value in data.items():
            field = cls.model_fields.get(name)
            if field is not None and isinstance(value, dict) and isinstance(field.default, ClassPolicy):
                out[name] = {**field.default.model_dump(), **value}
        return out

    @model_validator(mode="after")
    def _shares_leave_room(self) -> ClassPolicies:
        if sum(p.share for p in self.ordered()) >= 1.0:
            raise ValueError("class shares must add up to less than 1")
        return self


class FusionSettings(BaseModel):
    """Joining feature rows with labels and hub context into FusedBatch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    batch_size: int = Field(256, ge=1, le=65536, description="Rows per fused batch; a full batch is sent at once.")
    batch_age: float = Field(1.0, gt=0, description="Seconds the oldest row of a partial batch may wait before it is sent.")
    label_wait: float = Field(0.5, ge=0, description="Seconds a row waits for its label before it joins a batch.")
    window: float = Field(60.0, gt=0, description="Seconds after a row was sent during which a late label is still "
                                                  "sent (as a label-only row); also how long early labels are held.")
    max_pending_labels: int = Field(100_000, ge=1, description="Labels held waiting for their row (oldest evicted, counted).")
    max_waiting_rows: int = Field(100_000, ge=1, description="Rows waiting for labels; beyond that the oldest are batched early.")
    max_recent_rows: int = Field(50_000, ge=1, description="Sent rows remembered for late labels (oldest forgotten first).")
    context: list[str] = Field(["hour_sin", "hour_cos", "late_label"], description=(
        "Context columns appended to every row: " + ", ".join(CONTEXT_BUILTINS)
        + ", 'meta:<key>' (from devices), 'telemetry:<field>' (" + ", ".join(TELEMETRY_FIELDS) + ")."))
    devices: dict[str, dict[str, float]] = Field(default_factory=dict,
                                                 description="Per-device metadata for 'meta:<key>' context columns.")
    meta_default: float = Field(0.0, description="Value of a 'meta:<key>' column for devices without that key.")

    @model_validator(mode="after")
    def _known_context(self) -> FusionSettings:
        for name in self.context:
            if name in CONTEXT_BUILTINS:
                continue
            kind, _, arg = name.partition(":")
            if kind == "meta" and arg:
                continue
            if kind == "telemetry" and arg in TELEMETRY_FIELDS:
                continue
            raise ValueError(f"unknown context column {name!r}")
        if len(set(self.context)) != len(self.context):
            raise ValueError("context columns must be unique")
        return self


class CustodySettings(BaseModel):
    """When devices may forget what they sent (docs/PROTOCOL.md, "Delivery guarantee")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: Literal["worker", "broker"] = Field(
        "worker", description="Feature rows are in custody once a worker acknowledges their fused batch on "
                              "hub/ack/{id} (worker), or once the broker acknowledges it (broker: only with a "
                              "broker that acknowledges from disk, or workers that do not send hub/ack).")
    interval_s: float = Field(1.0, gt=0, description="Seconds between two custody messages to one device, at least.")
    max_rate: float | None = Field(500.0, gt=0, description="Custody messages per second to all devices together, "
                                   "about: with more devices with news than this, the spacing to each grows (to "
                                   "max_interval_s); none: every interval_s, however many devices.")
    max_interval_s: float = Field(10.0, gt=0, description="Longest spacing between two custody messages to one device; "
                                  "keep it well below the agents' custody_timeout_s (30 s), or they send again.")
    republish_s: float = Field(30.0, gt=0, description="Publish a fused batch again when no worker acknowledged it "
                                                       "within this long (then twice as long, and so on).")
    republish_max_s: float = Field(300.0, gt=0, description="Longest wait between two publications of one batch.")
    max_unacked_batches: int = Field(2000, ge=1, description="Fused batches kept for workers at most; beyond, the "
                                     "oldest is given up (counted) and its devices send those rows again.")

    @model_validator(mode="after")
    def _spacing(self) -> CustodySettings:
        if self.max_interval_s < self.interval_s:
            raise ValueError("custody.max_interval_s must be at least custody.interval_s")
        return self


class BridgeMetricsSettings(MetricsSettings):
    port: int = Field(9851, ge=0, le=65535, description="Port of the bridge's metrics endpoint; 0 picks a free one.")
    max_devices: int = Field(2000, ge=0, description="Devices given per-device series (lepton_device_*); past it a "
                                                     "new device gets none and lepton_bridge_device_series_left_out"
                                                     "_total counts it.")


class BridgeConfig(BaseModel):
    """The hub bridge: priority routing, shedding, dedup, fusion."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    ENV_ROLE: ClassVar[str] = "bridge"  # LEPTON_BRIDGE__* env vars (shared.process.config)

    root: str = Field(DEFAULT_ROOT, description="Topic root every topic lives under.")
    id: str = Field("bridge-1", pattern=SEGMENT_RE.pattern,
                    description="Instance id: client ids are <id>-hi and <id>-bulk; keep it stable across restarts.")
    mqtt: MqttSettings = Field(default_factory=MqttSettings, description="Broker connection.")
    bulk_username: str | None = Field(None, description="Username of the bulk connection. A broker with "
                                      "use_username_as_clientid needs one identity per connection (e.g. mqtt.username "
                                      "= bridge_1, bulk_username = bridge_1-bulk); None reuses mqtt.username.")
    bulk_password: str | None = Field(None, description="Password of the bulk connection; None reuses mqtt.password.")
    session_expiry: int = Field(3600, ge=0, description="Seconds the broker keeps our durable session (and queues "
                                                       "QoS 1 messages) while the bridge is down; 0 = clean session.")
    receive_maximum: int = Field(40_000, ge=10, le=65535,
                                 description="Unacked QoS 1 messages the broker may send per connection; must exceed "
                                             "the capacities of the classes on that connection, or a backlog stays "
                                             "at the broker instead of being shed here by priority.")
    share_group: str | None = Field(None, pattern=SEGMENT_RE.pattern,
                                    description="Consume through $share/<group>/... so replicas split the load.")
    consume_predictions: bool = Field(False, description="Also consume edge/+/pred/+ (telemetry class).")
    classes: ClassPolicies = Field(default_factory=ClassPolicies, description="Queue policy per priority class.")
    fusion: FusionSettings = Field(default_factory=FusionSettings, description="Feature/label fusion.")
    status_interval: float = Field(5.0, gt=0, description="Seconds between hub/status publications.")
    dedup_streams: int = Field(100_000, ge=1, description="(device, boot) pairs whose custody the bridge remembers "
                                                         "(copies of older ones are processed again).")
    custody: CustodySettings = Field(default_factory=CustodySettings, description="Custody of device messages.")
    latency_samples: int = Field(4096, ge=16, description="Recent dispatch latencies kept per class for p50/p99.")
    bulk_read_pause_s: float = Field(0.002, ge=0, le=0.1, description=(
        "The bulk connection (features, telemetry) reads in bursts at most this often: at a few thousand "
        "messages a second that halves the bridge's wake-ups; alerts use the other connection, unaffected."))
    gc_freeze: bool = Field(True, description=(
        "Once connected, collect and then freeze every object allocated so far (imported modules, config) "
        "out of Python's cyclic collector, so a collection scans only what the bridge holds, not numpy, "
        "pydantic and paho."))
    gc_collect_every_s: float = Field(60.0, ge=0, description=(
        "While a bridge runs, Python's automatic cyclic collection is off and the dispatcher runs a full "
        "one this often (one pause, ~50-100 ms, instead of several 10-50 ms pauses a second that alerts "
        "wait out; the bridge's messages are freed by reference counting, cycles are rare: ~300 objects "
        "per 20k messages measured). 0: the automatic collector (young generation every 50,000 allocations)."))
    switch_interval_s: float = Field(0.001, gt=0, le=0.1, description=(
        "Python's GIL switch interval, set for the whole process at start: the longest a network thread "
        "with an alert waits for the GIL behind fusion work (Python's default is 0.005)."))
    metrics: BridgeMetricsSettings = Field(default_factory=BridgeMetricsSettings,
                                           description="Prometheus /metrics endpoint (docs/INTEGRATIONS.md).")
    status_top_devices: int = Field(20, ge=0, description="Devices with the most drops listed in hub/status counters.")

    @model_validator(mode="after")
    def _root_ok(self) -> BridgeConfig:
        check_root(self.root)
        c = self.classes
        for conn, total in (("hi (event+escalation+label)", c.event.capacity + c.escalation.capacity
                             + c.label.capacity), ("bulk (feature+telemetry)", c.feature.capacity
                                                   + c.telemetry.capacity)):
            if self.receive_maximum <= total:
                raise ValueError(f"receive_maximum {self.receive_maximum} must exceed the queue capacity of the "
                                 f"{conn} connection ({total})")
        return self
