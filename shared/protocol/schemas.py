"""JSON payload schemas: one pydantic model per message kind.

Every payload carries ``"schema": 1`` and a ``"kind"`` discriminator; unknown fields are
rejected (``extra="forbid"``) so a typo on the producer side fails loudly at the consumer.
Binary tensor payloads are described in :mod:`shared.protocol.containers`.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from shared.protocol import strictjson
from shared.protocol.topics import DEVICE_RE, SEGMENT_RE

SCHEMA_VERSION = 1
MAX_JSON_BYTES = 256 * 1024
# A manifest carries reference inputs (base64) for the agent's parity check: it may be larger.
MAX_MANIFEST_BYTES = 2 * 1024 * 1024

DeviceId = Annotated[str, Field(pattern=DEVICE_RE.pattern, description="Device id, [a-z0-9-], max 48 chars.")]
Segment = Annotated[str, Field(pattern=SEGMENT_RE.pattern, description="Topic-safe name, [a-z0-9_-].")]
Prob = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]
GROUP_RE = r"^[a-z0-9][a-z0-9_.:-]{0,63}$"
GroupName = Annotated[str, Field(pattern=GROUP_RE, description="Device group, e.g. site:garage or ring:canary "
                                                               "([a-z0-9_.:-], max 64 chars); device:<id> names one "
                                                               "device.")]
Percent = Annotated[float, Field(ge=0.0, le=100.0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class SchemaError(ValueError):
    """A JSON payload that cannot be accepted; ``reason`` is a stable counter key."""

    reason = "invalid"


class NotJson(SchemaError):
    reason = "not_json"


class UnknownSchemaVersion(SchemaError):
    reason = "unknown_schema_version"


class WrongKind(SchemaError):
    reason = "wrong_kind"


class InvalidPayload(SchemaError):
    reason = "invalid"


class PayloadTooLarge(SchemaError):
    reason = "oversized"


class Msg(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    schema_version: Literal[1] = Field(
        SCHEMA_VERSION, alias="schema", description="Payload schema version; consumers reject versions they do not know."
    )


class Status(Msg):
    """Birth and death of an agent (retained; the LWT carries state=offline)."""

    kind: Literal["status"] = "status"
    device: DeviceId
    state: Literal["online", "offline"] = Field(description="online after connect; offline via LWT or clean stop.")
    boot: int = Field(ge=0, description="Boot epoch (unix seconds at process start); part of the dedup key.")
    versions: dict[str, str] = Field(default_factory=dict, description="Software versions (lepton, onnxruntime, ...).")
    models: dict[str, int] = Field(default_factory=dict, description="Model version in use per task.")
    groups: list[GroupName] = Field(default_factory=list, max_length=64,
                                    description="Groups the device belongs to (its config), for staged rollouts.")
    ring: Percent | None = Field(None, description="The device's place on the stable hash ring, 0-100 "
                                                   "(shared/model/groups.py): a release's share of the fleet is the "
                                                   "devices below a threshold.")
    ts: Finite = Field(description="Unix time of this message.")


class Telemetry(Msg):
    kind: Literal["telemetry"] = "telemetry"
    device: DeviceId
    boot: int = Field(ge=0, description="Boot epoch of the sender.")
    ts: Finite = Field(description="Unix time of this message.")
    fps: Finite = Field(ge=0, description="Frames processed per second over the last interval.")
    latency_ms_p50: Finite = Field(ge=0, description="Median inference latency, ms.")
    latency_ms_p99: Finite = Field(ge=0, description="99th percentile inference latency, ms.")
    uplink_bytes: int = Field(ge=0, description="Payload bytes published since boot.")
    raw_bytes: int = Field(ge=0, description="Bytes the raw inputs would have cost (JPEG) since boot.")
    outbox_depth: int = Field(ge=0, description="Messages waiting in the store-and-forward outbox.")
    escalation_ratio: Prob = Field(description="Escalated samples / samples since boot.")
    frames: int = Field(ge=0, description="Frames processed since boot.")
    dropped_frames: int = Field(ge=0, description="Frames dropped by the capture queue since boot.")
    counters: dict[str, int] = Field(default_factory=dict, description="Other counters (rejections, swaps, ...).")
    models: dict[str, int] = Field(default_factory=dict, description="Model version serving per task when this was "
                                                                     "sent; latency figures are of that model.")


class Prediction(Msg):
    kind: Literal["pred"] = "pred"
    device: DeviceId
    stream: Segment
    task: Segment
    sample: int = Field(ge=0, description="Sample id, unique per device.")
    label: int = Field(ge=0, description="Predicted class index.")
    confidence: Prob = Field(description="Score of the predicted class.")
    source: Literal["edge", "cloud"] = Field(description="Who decided: the local model or the cloud's reply.")
    escalated: bool = Field(description="Whether the sample was escalated.")
    model_version: int = Field(ge=0, description="Edge model version that scored the sample.")
    ref: str = Field("", max_length=256, description="Source reference of the raw sample (file, frame no., dataset index).")
    ts: Finite = Field(description="Capture time (unix seconds).")


class Event(Msg):
    kind: Literal["event"] = "event"
    device: DeviceId
    stream: Segment
    task: Segment
    sample: int = Field(ge=0, description="Sample id that raised the alert.")
    label: int = Field(ge=0, description="Alert class index.")
    name: str = Field(max_length=64, description="Alert class name.")
    confidence: Prob = Field(description="Score of the alert class.")
    boot: int = Field(ge=0, description="Boot epoch of the sender.")
    seq: int = Field(ge=0, description="Per-boot sequence number (dedup key with device and boot).")
    ts: Finite = Field(description="Capture time (unix seconds).")


class Reply(Msg):
    """The cloud's answer to an escalated sample, sent to the request's response topic."""

    kind: Literal["reply"] = "reply"
    task: Segment
    sample: int = Field(ge=0, description="The escalated sample id.")
    label: int = Field(ge=0, description="Cloud model's class.")
    confidence: Prob = Field(description="Cloud model's score for that class.")
    model: str = Field(max_length=64, description="Cloud model name/version that answered.")
    worker: str = Field(max_length=64, description="Worker id that answered.")
    defer: bool = Field(False, description="The cloud model is no better than the device's where devices escalate "
                                           "(measured on the holdout): keep your own decision.")
    ts: Finite = Field(description="Unix time of the answer.")


MAX_RANGES = 1024
SeqRange = tuple[Annotated[int, Field(ge=0)], Annotated[int, Field(ge=0)]]


def _check_ranges(v: list[tuple[int, int]]) -> list[tuple[int, int]]:
    for lo, hi in v:
        if lo > hi:
            raise ValueError(f"range [{lo}, {hi}] runs backwards")
    return v


class Custody(Msg):
    """The bridge's word that QoS 1 messages of one (device, boot) reached their final fate.

    Final: consumed (events), forwarded and acknowledged (escalations), held durably by a cloud
    worker (features), or dropped, expired or rejected by policy and counted. The agent deletes
    those rows from its outbox; until then it keeps them and sends them again after a timeout.
    The ranges are the bridge's whole custody set for that boot (newest ranges first kept when
    there are more than fit), so any later message repairs a lost one."""

    kind: Literal["custody"] = "custody"
    device: DeviceId
    boot: int = Field(ge=0, description="Boot epoch the sequence numbers belong to.")
    ranges: list[SeqRange] = Field(min_length=1, max_length=MAX_RANGES,
                                   description="Inclusive [first, last] sequence number ranges in custody.")
    ts: Finite = Field(description="Unix time of this message.")

    _ranges = field_validator("ranges")(_check_ranges)


class BatchAck(Msg):
    """A cloud worker's word that it has ingested fused batches durably (the learning buffer is on disk)."""

    kind: Literal["batch_ack"] = "batch_ack"
    bridge: Segment = Field(description="Bridge id the batches came from (also the topic leaf).")
    boot: int = Field(ge=0, description="That bridge's boot epoch (from the batches' meta).")
    task: Segment
    ranges: list[SeqRange] = Field(min_length=1, max_length=MAX_RANGES,
                                   description="Inclusive [first, last] fused batch sequence ranges.")
    worker: str = Field(max_length=64, description="Worker id that holds them.")
    ts: Finite = Field(description="Unix time of this message.")

    _ranges = field_validator("ranges")(_check_ranges)


class ModelState(Msg):
    kind: Literal["model_state"] = "model_state"
    device: DeviceId
    task: Segment
    state: Literal["loaded", "rejected", "rolled_back", "stale"] = Field(description="What happened to the model.")
    version: int = Field(ge=0, description="Version now serving.")
    offered: int | None = Field(None, ge=0, description="Version offered, when it was rejected.")
    reason: str = Field("", max_length=512, description="Why, when rejected or rolled back.")
    ts: Finite = Field(description="Unix time of this message.")


class Command(Msg):
    kind: Literal["cmd"] = "cmd"
    name: Literal["rebirth", "thresholds", "rollback"] = Field(description="Command name (also the topic leaf).")
    args: dict[str, Finite | int | str] = Field(default_factory=dict, description="Command arguments.")
    ts: Finite = Field(description="Unix time of this message.")


class LabelItem(BaseModel):
    """One sample's ground truth."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample: int = Field(ge=0, description="Sample id.")
    label: int = Field(ge=-1, description="True class index; -1 (only in a message that supersedes) retracts an "
                                          "earlier label: the sample is unlabelled again.")


class Labels(Msg):
    """Ground truth for samples of one device and stream. With ``publisher`` and ``seq`` the message is
    under custody: its publisher keeps it until the bridge says so on ``hub/custody/{publisher}``."""

    kind: Literal["label"] = "label"
    device: DeviceId
    stream: Segment
    task: Segment
    items: list[LabelItem] = Field(min_length=1, max_length=4096, description="Ground truth by sample id.")
    source: str = Field("human", max_length=64, description="Who labelled (human, app, labeller).")
    supersedes: bool = Field(False, description="A correction: these labels replace any earlier label of the same "
                                                "samples at the hub and at every worker, and copies of the old "
                                                "label are ignored from then on.")
    publisher: Annotated[str, Field(pattern=r"^$|" + SEGMENT_RE.pattern)] = Field(
        "", description="Label publisher's name for custody (its identity in a secure broker); empty: no custody.")
    boot: int = Field(0, ge=0, description="Publisher's boot epoch (ms); (publisher, boot, seq) is the dedup key.")
    seq: int | None = Field(None, ge=0, description="Per-boot sequence number of this label message, for custody; "
                                                    "None: no custody.")
    ts: Finite = Field(description="Unix time of this message.")

    @model_validator(mode="after")
    def _retract_only_when_superseding(self) -> Labels:
        if not self.supersedes and any(i.label < 0 for i in self.items):
            raise ValueError("label -1 (retract) is allowed only with supersedes")
        if (self.seq is None) != (self.publisher == ""):
            raise ValueError("publisher and seq go together (custody needs both)")
        return self


class LabelCustody(Msg):
    """The bridge's word that label messages of one (publisher, boot) reached their final fate: joined
    into a fused batch a worker holds, forwarded as a correction, or counted (late, unmatched, ...)."""

    kind: Literal["label_custody"] = "label_custody"
    publisher: Segment = Field(description="Label publisher (also the topic leaf).")
    boot: int = Field(ge=0, description="Publisher's boot epoch the sequence numbers belong to.")
    ranges: list[SeqRange] = Field(min_length=1, max_length=MAX_RANGES,
                                   description="Inclusive [first, last] label message sequence ranges in custody.")
    ts: Finite = Field(description="Unix time of this message.")

    _ranges = field_validator("ranges")(_check_ranges)


class ServiceStatus(Msg):
    kind: Literal["service_status"] = "service_status"
    service: Literal["bridge", "worker"]
    id: str = Field(max_length=64, description="Instance id.")
    state: Literal["online", "offline"]
    ts: Finite = Field(description="Unix time of this message.")
    counters: dict[str, int] = Field(default_factory=dict, description="Monotonic counters.")
    gauges: dict[str, Finite] = Field(default_factory=dict, description="Current values (queue depths, rates, lag).")


class TensorSpec(BaseModel):
    """One ONNX input or output: name, element type and dimensions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(max_length=64, description="ONNX input/output name.")
    dtype: Literal["float32", "float16", "int64", "uint8"] = Field(description="Element type.")
    shape: list[int | str] = Field(description="Dimensions; strings are symbolic (batch).")


class InputSpec(BaseModel):
    """The exact preprocessing contract, so anyone can feed the model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    tensor: TensorSpec = Field(description="The model input `x`.")
    layout: str = Field(max_length=16, description="NCHW for images, NCT for sensor windows.")
    preprocess: dict[str, Any] = Field(description="Named preprocessing steps and parameters, in order.")
    classes: list[str] = Field(min_length=2, description="Class names by index.")
    alert_classes: list[str] = Field(default_factory=list, description="Classes that raise an event on the agent.")


class CloudInput(BaseModel):
    """The cloud's input contract: how agents send a raw sample, and what the cloud makes of it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    encoding: Literal["jpeg", "float16", "raw"] = Field(description="How a raw sample travels: jpeg (frames at "
                                                                    "capture resolution), float16, or raw (its dtype).")
    quality: int = Field(70, ge=1, le=100, description="JPEG quality agents encode frames at.")
    uplink: Literal["escalations", "all"] = Field(description="escalations: raw samples ride with escalations (one "
                                                              "in decision.raw_every); all: every feature row carries "
                                                              "its sample too.")
    preprocess: dict[str, Any] = Field(description="The cloud's own preprocessing steps, from the raw sample.")
    shape: list[int] = Field(min_length=1, max_length=3, description="The cloud model's input, no batch axis.")


class DecisionDefaults(BaseModel):
    """How agents of the task decide, unless their own config says otherwise (the task spec's defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    policy: Literal["max_prob", "margin", "entropy"] = Field("max_prob", description="Escalation policy.")
    threshold: float = Field(0.8, ge=0, le=1, description="Its threshold.")
    budget: float | None = Field(None, gt=0, le=1, description="At most this fraction escalated as uncertain.")
    raw_every: int = Field(1, ge=0, le=1_000_000, description="One escalation in this many carries its raw sample "
                           "(per the manifest's cloud contract); the others carry features only. 0: none does.")


class Manifest(Msg):
    """Signed description of one model version (retained on model/{task}/manifest)."""

    kind: Literal["manifest"] = "manifest"
    task: Segment
    version: int = Field(ge=1, description="Monotonic version; agents never accept a lower or equal one.")
    parent: int | None = Field(None, ge=1, description="Version this one was trained from.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="SHA-256 of the ONNX artifact.")
    size: int = Field(ge=1, description="Artifact size in bytes; agents refuse larger artifacts.")
    artifact: str = Field(max_length=512, description="Topic of the retained artifact.")
    input: InputSpec
    outputs: list[TensorSpec] = Field(description="ONNX outputs: features then scores.")
    metrics: dict[str, Finite] = Field(default_factory=dict, description="Holdout metrics at publish time.")
    decision: DecisionDefaults | None = Field(None, description="Decision defaults for agents of the task.")
    cloud: CloudInput | None = Field(None, description="The cloud's input contract (raw sample encoding, its "
                                                       "preprocessing); None: agents send no raw samples.")
    reference: str = Field(max_length=2_000_000, description="Base64 tensor container: inputs x and expected outputs.")
    tolerance: Finite = Field(1e-3, gt=0, description="Max |expected - actual| on the reference outputs.")
    created: Finite = Field(description="Unix time the version was made.")
    expires: Finite = Field(description="Unix time after which agents report the manifest stale.")
    key_id: str = Field("", max_length=64, description="Fingerprint of the signing key.")
    signature: str = Field("", max_length=256, description="Base64 Ed25519 signature over the canonical JSON without this field.")

    @field_validator("expires")
    @classmethod
    def _expires_after_created(cls, v: float, info: Any) -> float:
        created = info.data.get("created")
        if created is not None and v <= created:
            raise ValueError("expires must be after created")
        return v


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Stage(_Part):
    """One stage of a release: the devices that run the candidate once it is reached (with every earlier stage's)."""

    share: Percent | None = Field(None, description="Percent of the fleet by hash-ring position (100: everyone).")
    groups: list[GroupName] = Field(default_factory=list, max_length=64,
                                    description="Named groups in the stage: a device in any of them is in.")
    ring_below: Percent | None = Field(None, description="Set by the worker when the stage starts: devices whose ring "
                                                         "position is below it are in the stage (the share turned into "
                                                         "a threshold over the fleet it knew then, so a device that "
                                                         "comes online later decides alone and the same way).")


class ReleasePlan(_Part):
    """How a release is staged and judged (the worker's `rollout` config when the release started)."""

    stages: list[Stage] = Field(min_length=1, max_length=16, description="Stages in order; the last one normally "
                                                                         "covers the fleet (share 100).")
    metric: Literal["accuracy", "cloud_agreement"] = Field("accuracy", description="Field metric that decides: "
                                                           "accuracy against labels, or agreement with the cloud on "
                                                           "escalations.")
    margin: Prob = Field(0.02, description="Non-inferiority margin: the candidate may be at most this much worse "
                                           "than control on the metric.")
    alpha: float = Field(0.05, gt=0, lt=0.5, description="One-sided significance level of the decision test.")
    min_samples: int = Field(200, ge=1, description="Samples per arm (candidate and control) before any decision.")
    min_labels: int = Field(100, ge=1, description="Labelled samples (or answered escalations, for cloud_agreement) "
                                                   "per arm before any decision on the metric.")
    min_stage_s: float = Field(60.0, ge=0, allow_inf_nan=False, description="No decision before a stage has run "
                                                                             "this long.")
    max_stage_s: float = Field(3600.0, gt=0, allow_inf_nan=False, description="A stage without a decision by then "
                                                                               "rolls back: no evidence is not a "
                                                                               "promotion.")
    max_escalation_increase: Prob = Field(0.05, description="Roll back when the candidate escalates more than "
                                                            "control by more than this (one-sided test).")
    max_latency_ratio: float = Field(2.0, ge=1, allow_inf_nan=False, description="Roll back when the candidate's "
                                                                                 "median inference latency exceeds "
                                                                                 "control's times this, plus 1 ms.")
    max_error_rate_increase: Prob = Field(0.01, description="Roll back when the candidate's inference error rate "
                                                            "exceeds control's by more than this.")
    max_swap_failures: int = Field(1, ge=1, description="Roll back once this many devices failed to load the "
                                                        "candidate.")


class Pin(_Part):
    """An operator's pin: the devices of a group run one version, whatever the release says."""

    group: GroupName = Field(description="The pinned group (device:<id> for one device).")
    version: int = Field(ge=1, description="The version the group runs.")


class ArmFigures(_Part):
    """What one arm (candidate or control devices) did in the field during the current stage."""

    version: int = Field(ge=0, description="Model version of the arm.")
    devices: int = Field(ge=0, description="Devices seen on that version in the stage.")
    samples: int = Field(ge=0, description="Samples scored by that version (fused feature rows).")
    labelled: int = Field(ge=0, description="Of those, samples with a ground-truth label.")
    correct: int = Field(ge=0, description="Labelled samples the edge model got right.")
    accuracy: Prob | None = Field(None, description="correct / labelled.")
    escalations: int = Field(ge=0, description="Escalations of that version answered by this worker.")
    agree: int = Field(ge=0, description="Escalations where the edge's label was the cloud's.")
    agreement: Prob | None = Field(None, description="agree / escalations.")
    escalation_rate: Prob | None = Field(None, description="escalations / samples.")
    latency_ms_p50: Finite | None = Field(None, ge=0, description="Median of the devices' reported median "
                                                                  "inference latency on that version, ms.")
    frames: int = Field(ge=0, description="Frames the devices reported processing on that version.")
    errors: int = Field(ge=0, description="Inference errors and refused inputs reported on that version.")
    error_rate: Prob | None = Field(None, description="errors / frames.")
    swap_failures: int = Field(ge=0, description="Devices that refused to load that version (ModelState rejected).")


class Figures(_Part):
    """The evidence behind a rollout decision."""

    candidate: ArmFigures = Field(description="The canary devices on the candidate version.")
    control: ArmFigures = Field(description="The other devices, on the control version, over the same period.")
    elapsed_s: Finite = Field(ge=0, description="Seconds the stage had run.")
    metric: Literal["accuracy", "cloud_agreement"] = Field(description="The deciding metric.")
    difference: Finite | None = Field(None, description="Candidate minus control on the metric.")
    lower: Finite | None = Field(None, description="One-sided lower confidence bound of the difference (Newcombe "
                                                   "hybrid score interval).")
    upper: Finite | None = Field(None, description="One-sided upper confidence bound of the difference.")
    margin: Prob = Field(description="The plan's non-inferiority margin.")
    test: str = Field(max_length=128, description="The test, e.g. newcombe-score 1-sided alpha=0.05.")


class Release(Msg):
    """A task's staged rollout, signed (retained on model/{task}/release); agents pick their version from it."""

    kind: Literal["release"] = "release"
    task: Segment
    release: str = Field(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$", description="Release id.")
    seq: int = Field(ge=1, description="Increases with every change; agents refuse a lower one (a replay).")
    state: Literal["running", "paused", "promoted", "rolled_back", "aborted"] = Field(
        description="running/paused: the stages decide; promoted: everyone runs the candidate; rolled_back/aborted: "
                    "everyone runs `restored` (control's weights).")
    candidate: int = Field(ge=1, description="The version being rolled out.")
    control: int = Field(ge=1, description="The version the rest of the fleet runs meanwhile.")
    restored: int | None = Field(None, ge=1, description="After a rollback: the version carrying control's weights "
                                                         "that everyone runs (agents only move forward).")
    stage: int = Field(ge=0, description="Index of the current stage in plan.stages.")
    plan: ReleasePlan = Field(description="Stages and decision rule of this release.")
    pins: list[Pin] = Field(default_factory=list, max_length=256, description="Groups pinned to a version by an "
                                                                              "operator; a pin outranks the stages.")
    forced: bool = Field(False, description="Released although the holdout gate refused it (the demo's "
                                            "--inject-bad-release).")
    reason: str = Field("", max_length=512, description="Why the last change happened.")
    figures: Figures | None = Field(None, description="The latest field figures of the current stage.")
    started: Finite = Field(description="Unix time the release started.")
    updated: Finite = Field(description="Unix time of this change.")
    key_id: str = Field("", max_length=64, description="Fingerprint of the signing key.")
    signature: str = Field("", max_length=256, description="Base64 Ed25519 signature over the canonical JSON without "
                                                           "this field.")


class RolloutEvent(Msg):
    """One stage change of a release, with the figures behind it (signed, on rollout/{task}/event)."""

    kind: Literal["rollout_event"] = "rollout_event"
    task: Segment
    release: str = Field(max_length=64, description="Release id.")
    seq: int = Field(ge=0, description="The release's seq after the change.")
    action: Literal["start", "advance", "promote", "rollback", "pause", "resume", "abort", "pin", "unpin",
                    "refused"] = Field(description="What happened; refused: an operator command that was not applied.")
    from_version: int = Field(ge=0, description="Version the group ran before.")
    to_version: int = Field(ge=0, description="Version the group runs now.")
    group: str = Field(max_length=512, description="The devices the change applies to, e.g. ring<48.2 (cam-1, cam-4).")
    stage_from: int = Field(ge=0, description="Stage index before.")
    stage_to: int = Field(ge=0, description="Stage index after.")
    reason: str = Field(max_length=512, description="Why, in words (the decision rule's verdict or the operator's).")
    figures: Figures | None = Field(None, description="The field figures behind the decision.")
    forced: bool = Field(False, description="The release went out although the holdout gate refused it (demo).")
    command: str = Field("", max_length=64, description="Id of the operator command that caused it, if any.")
    ts: Finite = Field(description="Unix time of the change.")
    key_id: str = Field("", max_length=64, description="Fingerprint of the signing key.")
    signature: str = Field("", max_length=256, description="Base64 Ed25519 signature over the canonical JSON without "
                                                           "this field.")


class RolloutCommand(Msg):
    """An operator's command to a task's release (signed with the model-signing key, on rollout/{task}/cmd)."""

    kind: Literal["rollout_cmd"] = "rollout_cmd"
    task: Segment
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Unique command id; the worker answers "
                                                                       "with an event carrying it, and runs it once.")
    action: Literal["pause", "resume", "promote", "abort", "pin", "unpin"] = Field(
        description="pause/resume the automatic decisions, promote to the next stage now, abort (roll back), "
                    "pin a group to a version or unpin it.")
    group: GroupName | None = Field(None, description="pin/unpin: the group.")
    version: int | None = Field(None, ge=1, description="pin: the version.")
    ts: Finite = Field(description="Unix time the command was made; the worker refuses one older than 5 minutes.")
    key_id: str = Field("", max_length=64, description="Fingerprint of the signing key.")
    signature: str = Field("", max_length=256, description="Base64 Ed25519 signature over the canonical JSON without "
                                                           "this field.")


JsonMsg = (Status | Telemetry | Prediction | Event | Reply | Custody | BatchAck | ModelState | Command | Labels
           | LabelCustody | ServiceStatus | Manifest | Release | RolloutEvent | RolloutCommand)
AnyMsg = Annotated[JsonMsg, Field(discriminator="kind")]
_ANY = TypeAdapter(AnyMsg)

SCHEMAS: dict[str, type[Msg]] = {
    m.__name__: m for m in (Status, Telemetry, Prediction, Event, Reply, Custody, BatchAck, ModelState, Command, Labels,
                            LabelCustody, ServiceStatus, Manifest, Release, RolloutEvent, RolloutCommand)
}

M = TypeVar("M", bound=Msg)


def dumps(msg: Msg) -> bytes:
    """Serialise for the wire: compact, aliases (``schema``), nothing left out."""
    return msg.model_dump_json(by_alias=True).encode()


def _load_obj(payload: bytes | bytearray | memoryview | str, limit: int = MAX_JSON_BYTES) -> dict[str, Any]:
    if len(payload) > limit:
        raise PayloadTooLarge(f"JSON payload of {len(payload)} B > {limit}")
    if len(payload) == 0:
        raise NotJson("empty payload")
    try:
        obj = strictjson.loads(payload)
    except strictjson.JsonError as exc:
        raise NotJson(f"payload is not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise InvalidPayload("payload must be a JSON object")
    version = obj.get("schema")
    if version != SCHEMA_VERSION:
        raise UnknownSchemaVersion(f"schema version {version!r}; this build reads {SCHEMA_VERSION}")
    return obj


def _validate(adapter_or_model: Any, obj: dict[str, Any]) -> Any:
    try:
        return adapter_or_model(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise InvalidPayload(f"{exc.error_count()} error(s); first at {loc or '<root>'}: {first['msg']}") from None


def max_bytes(expected: type[Msg]) -> int:
    """Largest payload accepted for ``expected`` (a manifest carries reference inputs)."""
    return MAX_MANIFEST_BYTES if expected is Manifest else MAX_JSON_BYTES


def loads(payload: bytes | bytearray | memoryview | str, expected: type[M]) -> M:
    """Parse and validate a payload that must be of type ``expected``."""
    obj = _load_obj(payload, max_bytes(expected))
    kind = obj.get("kind")
    want = expected.model_fields["kind"].default
    if kind != want:
        raise WrongKind(f"expected kind {want!r}, got {kind!r}")
    return _validate(expected.model_validate, obj)


def loads_any(payload: bytes | bytearray | memoryview | str) -> JsonMsg:
    """Parse any JSON message, dispatching on ``kind``."""
    return _validate(_ANY.validate_python, _load_obj(payload))


def canonical(obj: dict[str, Any]) -> bytes:
    """Deterministic JSON bytes (what manifests are signed over)."""
    for v in _walk(obj):
        if isinstance(v, float) and not math.isfinite(v):
            raise InvalidPayload("non-finite number in signed content")
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _walk(o: Any):
    if isinstance(o, dict):
        for v in o.values():
            yield from _walk(v)
    elif isinstance(o, list):
        for v in o:
            yield from _walk(v)
    else:
        yield o
