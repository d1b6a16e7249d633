"""Every MQTT topic Lepton uses, built and parsed here and nowhere else.

Publish topics (:class:`Topic`) and subscribe filters (:class:`Filter`) are distinct
types that validate themselves, so a wildcard can never be published to and a
typo can never silently subscribe to nothing. A ``Topic`` is a ``Filter`` (the one
that matches exactly it), so a concrete topic can be subscribed to as it is. ``TOPIC_SPECS`` is the table that
docs/PROTOCOL.md is generated from (``python -m shared.protocol.protocol_doc``).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

DEFAULT_ROOT = "lepton/v1"

# Device ids and other segments end up in ACL patterns and file names, so they are
# kept to a boring alphabet: no wildcards, separators, '$' or unicode look-alikes.
SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,47}$")
DEVICE_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,47}$")
_ROOT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*(/[a-z0-9][a-z0-9_-]*)*$")
_MAX_TOPIC = 512


class TopicError(ValueError):
    """A topic or filter that does not follow the Lepton layout."""


def check_segment(value: str, what: str = "segment") -> str:
    if not isinstance(value, str) or not SEGMENT_RE.match(value):
        raise TopicError(f"invalid {what} {value!r}: use 1-48 of [a-z0-9_-], starting with a letter or digit")
    return value


def check_device(value: str) -> str:
    if not isinstance(value, str) or not DEVICE_RE.match(value):
        raise TopicError(f"invalid device id {value!r}: must match {DEVICE_RE.pattern}")
    return value


def check_root(root: str) -> str:
    if not _ROOT_RE.match(root or ""):
        raise TopicError(f"invalid topic root {root!r}: slash-separated segments of [a-z0-9_-]")
    return root


@dataclass(frozen=True, slots=True)
class Filter:
    """A subscription filter; may contain '+' and a trailing '#', or be a $share filter."""

    value: str

    def __post_init__(self) -> None:
        v = self.value
        if not v or len(v) > _MAX_TOPIC or "\x00" in v:
            raise TopicError(f"not a subscription filter: {v!r}")
        levels = v.split("/")
        if levels[0] == "$share":
            if len(levels) < 3 or not levels[1] or "+" in levels[1] or "#" in levels[1]:
                raise TopicError(f"bad shared subscription {v!r}: $share/<group>/<filter>")
            levels = levels[2:]
        for i, lvl in enumerate(levels):
            if "#" in lvl and (lvl != "#" or i != len(levels) - 1):
                raise TopicError(f"'#' must be a whole, final level in {v!r}")
            if "+" in lvl and lvl != "+":
                raise TopicError(f"'+' must be a whole level in {v!r}")

    def shared(self, group: str) -> Filter:
        """This filter as an MQTT 5 shared subscription: each message goes to one group member."""
        if self.value.startswith("$share/"):
            raise TopicError("already a shared subscription")
        return Filter(f"$share/{check_segment(group, 'share group')}/{self.value}")

    def matches(self, topic: str | Topic) -> bool:
        t = str(topic).split("/")
        levels = self.value.split("/")
        if levels[0] == "$share":
            levels = levels[2:]
        for i, lvl in enumerate(levels):
            if lvl == "#":
                return True
            if i >= len(t) or (lvl != "+" and lvl != t[i]):
                return False
        return len(t) == len(levels)

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True, slots=True)
class Topic(Filter):
    """A concrete topic one may publish to (no wildcards). It is also the filter that matches
    exactly itself, so a topic goes wherever a filter does (subscribe to what you would publish)."""

    def __post_init__(self) -> None:
        v = self.value
        if not v or len(v) > _MAX_TOPIC or "+" in v or "#" in v or "\x00" in v or v.startswith("$"):
            raise TopicError(f"not a publishable topic: {v!r}")

    def __str__(self) -> str:
        return self.value


class Kind(str, enum.Enum):
    STATUS = "status"
    TELEMETRY = "telemetry"
    PRED = "pred"
    EVENT = "event"
    FEAT = "feat"
    HARD = "hard"
    REPLY = "reply"
    CUSTODY = "custody"
    MODEL_STATE = "model_state"
    CMD = "cmd"
    LABEL = "label"
    HUB_BATCH = "hub_batch"
    HUB_INFER = "hub_infer"
    HUB_STATUS = "hub_status"
    HUB_ACK = "hub_ack"
    CLOUD_STATUS = "cloud_status"
    LABEL_CUSTODY = "label_custody"
    HUB_RELABEL = "hub_relabel"
    MANIFEST = "manifest"
    ARTIFACT = "artifact"
    RELEASE = "release"
    MODEL_VERSION = "model_version"
    ROLLOUT_EVENT = "rollout_event"
    ROLLOUT_CMD = "rollout_cmd"
    SNAPSHOT = "snapshot"


@dataclass(frozen=True, slots=True)
class TopicSpec:
    """One row of the protocol: the pattern below the root and how it is used."""

    kind: Kind
    pattern: str  # placeholders in braces, relative to the root
    publisher: str
    consumer: str
    payload: str  # schema name (JSON) or container kind (binary)
    encoding: str  # "json" | "tensor" | "onnx" | "jpeg"
    qos: int
    retain: bool
    description: str


TOPIC_SPECS: tuple[TopicSpec, ...] = (
    TopicSpec(Kind.STATUS, "edge/{device}/status", "agent (LWT: broker)", "bridge, monitor", "Status", "json", 1, True,
              "Birth/death: online on connect, offline as the last will or on clean stop."),
    TopicSpec(Kind.TELEMETRY, "edge/{device}/telemetry", "agent", "bridge, monitor", "Telemetry", "json", 0, False,
              "Periodic metrics: fps, latency, uplink bytes, outbox depth, escalation ratio."),
    TopicSpec(Kind.PRED, "edge/{device}/pred/{stream}", "agent", "apps, monitor", "Prediction", "json", 0, False,
              "Local (or cloud-resolved) predictions, one message per sample."),
    TopicSpec(Kind.EVENT, "edge/{device}/event/{stream}", "agent", "bridge, apps", "Event", "json", 1, False,
              "Alerts for configured classes; the highest routing priority."),
    TopicSpec(Kind.SNAPSHOT, "edge/{device}/snapshot/{stream}/{name}", "agent", "Home Assistant, console, apps",
              "JPEG bytes", "jpeg", 0, True,
              "The frame of the newest event of one alert class ({name}), retained: what a notification shows. "
              "Bounded in size; shed (counted) while the device has alerts or escalations waiting."),
    TopicSpec(Kind.FEAT, "edge/{device}/feat/{stream}", "agent", "bridge", "feat", "tensor", 1, False,
              "Feature batch: features, sample ids, local scores and labels."),
    TopicSpec(Kind.HARD, "edge/{device}/hard/{stream}", "agent", "bridge", "hard", "tensor", 1, False,
              "Escalated sample(s) with MQTT 5 response topic and correlation data."),
    TopicSpec(Kind.REPLY, "edge/{device}/reply", "cloud worker", "agent", "Reply", "json", 1, False,
              "The cloud's decision for an escalated sample, matched by correlation data."),
    TopicSpec(Kind.CUSTODY, "edge/{device}/custody", "bridge", "agent", "Custody", "json", 0, False,
              "Custody: these QoS 1 messages of (device, boot) reached their final fate downstream; the agent "
              "deletes them from its outbox. Cumulative, so a lost one costs nothing."),
    TopicSpec(Kind.MODEL_STATE, "edge/{device}/model", "agent", "cloud worker, monitor", "ModelState", "json", 1, True,
              "Model state per task: loaded, rejected (with reason), rolled back, stale."),
    TopicSpec(Kind.CMD, "edge/{device}/cmd/{name}", "operator", "agent", "Command", "json", 1, False,
              "Operator command: rebirth, thresholds, rollback."),
    TopicSpec(Kind.LABEL, "label/{device}/{stream}", "app / labeller", "bridge", "Labels", "json", 1, False,
              "Ground-truth labels for sample ids."),
    TopicSpec(Kind.HUB_BATCH, "hub/batch/{task}", "bridge", "cloud workers ($share)", "fused", "tensor", 1, False,
              "Fused batch of feature rows, labels (-1 when unknown) and context."),
    TopicSpec(Kind.HUB_INFER, "hub/infer/{task}", "bridge", "cloud workers ($share)", "hard", "tensor", 1, False,
              "Escalations forwarded unchanged, response topic and correlation data intact."),
    TopicSpec(Kind.HUB_STATUS, "hub/status", "bridge", "monitor", "ServiceStatus", "json", 1, True,
              "Bridge health: queue depths, rates, drops and expiries per class, devices online."),
    TopicSpec(Kind.HUB_ACK, "hub/ack/{bridge}", "cloud worker", "bridge", "BatchAck", "json", 1, False,
              "A worker's word that it holds these fused batches of one bridge boot durably."),
    TopicSpec(Kind.LABEL_CUSTODY, "hub/custody/{publisher}", "bridge", "label publisher", "LabelCustody", "json", 0,
              False, "Custody for labels: these label messages of (publisher, boot) reached their final fate at the "
              "hub; the publisher forgets them. Cumulative, like a device's custody."),
    TopicSpec(Kind.HUB_RELABEL, "hub/relabel/{task}", "bridge", "cloud workers (every one)", "Labels", "json", 1, False,
              "Corrections (Labels with supersedes) forwarded unchanged to every worker, which replaces the old "
              "label wherever it has got to."),
    TopicSpec(Kind.CLOUD_STATUS, "cloud/{worker}/status", "cloud worker", "monitor", "ServiceStatus", "json", 1, True,
              "Worker health and counters."),
    TopicSpec(Kind.MANIFEST, "model/{task}/manifest", "cloud worker", "agents", "Manifest", "json", 1, True,
              "Signed model manifest: version, sha256, size, input spec, metrics, expiry."),
    TopicSpec(Kind.ARTIFACT, "model/{task}/artifact/{version}", "cloud worker", "agents", "ONNX bytes", "onnx", 1, True,
              "The model file itself; the manifest's sha256 and signature vouch for it."),
    TopicSpec(Kind.RELEASE, "model/{task}/release", "cloud worker", "agents, monitor, console", "Release", "json", 1, True,
              "Signed staged rollout of a task: candidate and control versions, the plan, the current stage, "
              "pins; each agent runs the version its groups and ring position get from it."),
    TopicSpec(Kind.MODEL_VERSION, "model/{task}/version/{version}", "cloud worker", "agents, console", "Manifest", "json", 1,
              True, "The signed manifest of one version, for the agents a release assigns it to (the fleet's "
                    "manifest stays on model/{task}/manifest)."),
    TopicSpec(Kind.ROLLOUT_EVENT, "rollout/{task}/event", "cloud worker", "operators, monitor, console", "RolloutEvent",
              "json", 1, False, "Signed record of every stage change of a release: versions, group, reason and the "
                                "field figures behind it."),
    TopicSpec(Kind.ROLLOUT_CMD, "rollout/{task}/cmd", "operator", "cloud worker", "RolloutCommand", "json", 1, False,
              "Signed operator command to the release of a task: pause, resume, promote, abort, pin, unpin."),
)

SPEC_BY_KIND: dict[Kind, TopicSpec] = {s.kind: s for s in TOPIC_SPECS}


# Home Assistant's MQTT discovery lives outside Lepton's root, under a prefix of its own:
# ``<prefix>/<component>/<node_id>/<object_id>/config`` (retained), node_id being the device id, so
# the ACL can bind a device to its own discovery topics as it binds it to its own edge tree.
HA_PREFIX = "homeassistant"
HA_COMPONENTS = ("binary_sensor", "sensor", "image")
HA_CONFIG_PATTERN = "{prefix}/{component}/{device}/{object}/config"


def ha_config(prefix: str, component: str, device: str, object_id: str) -> Topic:
    """A Home Assistant discovery topic for one entity of a Lepton device."""
    if component not in HA_COMPONENTS:
        raise TopicError(f"Home Assistant component {component!r}: one of {', '.join(HA_COMPONENTS)}")
    return Topic("/".join((check_root(prefix), component, check_device(device),
                           check_segment(object_id, "entity id"), "config")))


def ha_configs(prefix: str, device: str = "+") -> Filter:
    """Every discovery topic of one device (or of all: ``+``) under ``prefix``."""
    dev = device if device == "+" else check_device(device)
    return Filter(f"{check_root(prefix)}/+/{dev}/+/config")


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    kind: Kind
    device: str | None = None
    stream: str | None = None
    task: str | None = None
    name: str | None = None
    worker: str | None = None
    version: int | None = None
    bridge: str | None = None
    publisher: str | None = None


class Topics:
    """Builds topics and filters under one root (default ``lepton/v1``) and parses them back."""

    __slots__ = ("root", "_n")

    def __init__(self, root: str = DEFAULT_ROOT) -> None:
        self.root = check_root(root)
        self._n = len(self.root.split("/"))

    def _t(self, *parts: str) -> Topic:
        return Topic("/".join((self.root, *parts)))

    # ---- publish topics -------------------------------------------------
    def status(self, device: str) -> Topic:
        return self._t("edge", check_device(device), "status")

    def telemetry(self, device: str) -> Topic:
        return self._t("edge", check_device(device), "telemetry")

    def pred(self, device: str, stream: str) -> Topic:
        return self._t("edge", check_device(device), "pred", check_segment(stream, "stream"))

    def event(self, device: str, stream: str) -> Topic:
        return self._t("edge", check_device(device), "event", check_segment(stream, "stream"))

    def snapshot(self, device: str, stream: str, name: str) -> Topic:
        return self._t("edge", check_device(device), "snapshot", check_segment(stream, "stream"),
                       check_segment(name, "class name"))

    def feat(self, device: str, stream: str) -> Topic:
        return self._t("edge", check_device(device), "feat", check_segment(stream, "stream"))

    def hard(self, device: str, stream: str) -> Topic:
        return self._t("edge", check_device(device), "hard", check_segment(stream, "stream"))

    def reply(self, device: str) -> Topic:
        return self._t("edge", check_device(device), "reply")

    def custody(self, device: str) -> Topic:
        return self._t("edge", check_device(device), "custody")

    def model_state(self, device: str) -> Topic:
        return self._t("edge", check_device(device), "model")

    def cmd(self, device: str, name: str) -> Topic:
        return self._t("edge", check_device(device), "cmd", check_segment(name, "command"))

    def label(self, device: str, stream: str) -> Topic:
        return self._t("label", check_device(device), check_segment(stream, "stream"))

    def hub_batch(self, task: str) -> Topic:
        return self._t("hub", "batch", check_segment(task, "task"))

    def hub_infer(self, task: str) -> Topic:
        return self._t("hub", "infer", check_segment(task, "task"))

    def hub_status(self) -> Topic:
        return self._t("hub", "status")

    def hub_ack(self, bridge: str) -> Topic:
        return self._t("hub", "ack", check_segment(bridge, "bridge"))

    def label_custody(self, publisher: str) -> Topic:
        return self._t("hub", "custody", check_segment(publisher, "publisher"))

    def hub_relabel(self, task: str) -> Topic:
        return self._t("hub", "relabel", check_segment(task, "task"))

    def cloud_status(self, worker: str) -> Topic:
        return self._t("cloud", check_segment(worker, "worker"), "status")

    def manifest(self, task: str) -> Topic:
        return self._t("model", check_segment(task, "task"), "manifest")

    def artifact(self, task: str, version: int) -> Topic:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TopicError(f"model version must be a positive int, got {version!r}")
        return self._t("model", check_segment(task, "task"), "artifact", str(version))

    def release(self, task: str) -> Topic:
        return self._t("model", check_segment(task, "task"), "release")

    def model_version(self, task: str, version: int) -> Topic:
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise TopicError(f"model version must be a positive int, got {version!r}")
        return self._t("model", check_segment(task, "task"), "version", str(version))

    def rollout_event(self, task: str) -> Topic:
        return self._t("rollout", check_segment(task, "task"), "event")

    def rollout_cmd(self, task: str) -> Topic:
        return self._t("rollout", check_segment(task, "task"), "cmd")

    # ---- subscribe filters ---------------------------------------------
    def _f(self, *parts: str) -> Filter:
        return Filter("/".join((self.root, *parts)))

    def all(self) -> Filter:
        return self._f("#")

    def edge_tree(self) -> Filter:
        """Everything every device publishes (what the bridge consumes)."""
        return self._f("edge", "#")

    def device_tree(self, device: str) -> Filter:
        return self._f("edge", check_device(device), "#")

    def edge_kind(self, kind: Kind, device: str = "+") -> Filter:
        dev = device if device == "+" else check_device(device)
        tail = SPEC_BY_KIND[kind].pattern.split("/")[2:]
        tail = ["+" if p.startswith("{") else p for p in tail]
        return self._f("edge", dev, *tail)

    def of_kind(self, kind: Kind) -> Filter:
        """Every topic of one kind: its TOPIC_SPECS pattern with each placeholder a '+'."""
        return self._f(*["+" if p.startswith("{") else p for p in SPEC_BY_KIND[kind].pattern.split("/")])

    def readable(self) -> list[Filter]:
        """One filter per JSON kind: what a person can read with ``mosquitto_sub`` (no tensors, no ONNX)."""
        return [self.of_kind(s.kind) for s in TOPIC_SPECS if s.encoding == "json"]

    def binary(self) -> list[Filter]:
        """One filter per binary kind (tensor containers, ONNX artifacts)."""
        return [self.of_kind(s.kind) for s in TOPIC_SPECS if s.encoding != "json"]

    def labels(self) -> Filter:
        return self._f("label", "+", "+")

    def cmds(self, device: str) -> Filter:
        return self._f("edge", check_device(device), "cmd", "+")

    def statuses(self) -> Filter:
        return self._f("edge", "+", "status")

    def hub_batches(self, task: str = "+") -> Filter:
        return self._f("hub", "batch", task if task == "+" else check_segment(task, "task"))

    def hub_infers(self, task: str = "+") -> Filter:
        return self._f("hub", "infer", task if task == "+" else check_segment(task, "task"))

    def cloud_statuses(self) -> Filter:
        return self._f("cloud", "+", "status")

    def hub_relabels(self, task: str = "+") -> Filter:
        return self._f("hub", "relabel", task if task == "+" else check_segment(task, "task"))

    def manifests(self, task: str = "+") -> Filter:
        return self._f("model", task if task == "+" else check_segment(task, "task"), "manifest")

    def artifacts(self, task: str) -> Filter:
        return self._f("model", check_segment(task, "task"), "artifact", "+")

    def releases(self, task: str = "+") -> Filter:
        return self._f("model", task if task == "+" else check_segment(task, "task"), "release")

    def rollout_events(self, task: str = "+") -> Filter:
        return self._f("rollout", task if task == "+" else check_segment(task, "task"), "event")

    # ---- parsing --------------------------------------------------------
    def parse(self, topic: str | Topic) -> ParsedTopic:
        """Classify a received topic; raises TopicError for anything outside the layout."""
        s = str(topic)
        parts = s.split("/")
        if parts[: self._n] != self.root.split("/"):
            raise TopicError(f"topic {s!r} is not under root {self.root!r}")
        p = parts[self._n:]
        try:
            return self._parse_rel(p)
        except (TopicError, ValueError, IndexError) as exc:
            raise TopicError(f"unrecognised topic {s!r}: {exc}") from None

    def _parse_rel(self, p: list[str]) -> ParsedTopic:
        n = len(p)
        head = p[0] if p else ""
        if head == "edge" and n >= 3:
            dev = check_device(p[1])
            leaf = p[2]
            if n == 3:
                simple = {"status": Kind.STATUS, "telemetry": Kind.TELEMETRY, "reply": Kind.REPLY,
                          "model": Kind.MODEL_STATE, "custody": Kind.CUSTODY}
                if leaf in simple:
                    return ParsedTopic(simple[leaf], device=dev)
            elif n == 4:
                streamed = {"pred": Kind.PRED, "event": Kind.EVENT, "feat": Kind.FEAT, "hard": Kind.HARD}
                if leaf in streamed:
                    return ParsedTopic(streamed[leaf], device=dev, stream=check_segment(p[3], "stream"))
                if leaf == "cmd":
                    return ParsedTopic(Kind.CMD, device=dev, name=check_segment(p[3], "command"))
            elif n == 5 and leaf == "snapshot":
                return ParsedTopic(Kind.SNAPSHOT, device=dev, stream=check_segment(p[3], "stream"),
                                   name=check_segment(p[4], "class name"))
        elif head == "label" and n == 3:
            return ParsedTopic(Kind.LABEL, device=check_device(p[1]), stream=check_segment(p[2], "stream"))
        elif head == "hub":
            if n == 2 and p[1] == "status":
                return ParsedTopic(Kind.HUB_STATUS)
            if n == 3 and p[1] == "batch":
                return ParsedTopic(Kind.HUB_BATCH, task=check_segment(p[2], "task"))
            if n == 3 and p[1] == "infer":
                return ParsedTopic(Kind.HUB_INFER, task=check_segment(p[2], "task"))
            if n == 3 and p[1] == "ack":
                return ParsedTopic(Kind.HUB_ACK, bridge=check_segment(p[2], "bridge"))
            if n == 3 and p[1] == "custody":
                return ParsedTopic(Kind.LABEL_CUSTODY, publisher=check_segment(p[2], "publisher"))
            if n == 3 and p[1] == "relabel":
                return ParsedTopic(Kind.HUB_RELABEL, task=check_segment(p[2], "task"))
        elif head == "cloud" and n == 3 and p[2] == "status":
            return ParsedTopic(Kind.CLOUD_STATUS, worker=check_segment(p[1], "worker"))
        elif head == "model" and n >= 3:
            task = check_segment(p[1], "task")
            if n == 3 and p[2] == "manifest":
                return ParsedTopic(Kind.MANIFEST, task=task)
            if n == 3 and p[2] == "release":
                return ParsedTopic(Kind.RELEASE, task=task)
            if n == 4 and p[2] in ("artifact", "version") and p[3].isdigit() and not p[3].startswith("0"):
                return ParsedTopic(Kind.ARTIFACT if p[2] == "artifact" else Kind.MODEL_VERSION, task=task,
                                   version=int(p[3]))
        elif head == "rollout" and n == 3 and p[2] in ("event", "cmd"):
            return ParsedTopic(Kind.ROLLOUT_EVENT if p[2] == "event" else Kind.ROLLOUT_CMD,
                               task=check_segment(p[1], "task"))
        raise TopicError("no such topic in the protocol")
