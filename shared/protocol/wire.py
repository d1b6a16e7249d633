"""Decode any received Lepton message by its topic: the one dispatcher from topic to schema.

``decode(topics, topic, payload)`` parses the topic, picks the payload type from
``TOPIC_SPECS`` and returns a :class:`Decoded` or raises a :class:`WireError` whose
``reason`` is a stable counter key (``bad_topic``, ``not_json``, ``truncated``, ...).
``decode_parsed(parsed, payload)`` is the same for a consumer that has parsed (and cached)
the topic already, as the hub bridge does per message. Both check that the payload agrees
with its topic (device, stream, task), so no service repeats that check.

Every decoder this dispatches to lives in ``shared`` (``schemas`` for JSON, ``containers``
over ``codec`` for tensors), and so do their fast paths (``codec``'s cached header layouts,
the containers' cached tensor checks): a consumer that calls one container's decoder directly
for the one kind it takes (the cloud worker's ``FusedBatch.decode`` on hub/batch) runs the
same code, and a new payload type is still added in one place.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.process.counters import Counters
from shared.protocol import codec, rawsample, schemas
from shared.protocol.containers import CONTAINERS
from shared.protocol.topics import SPEC_BY_KIND, Kind, ParsedTopic, TopicError, Topics

log = logging.getLogger(__name__)


class WireError(ValueError):
    """A received message that cannot be used. ``kind`` is None when the topic itself is bad."""

    def __init__(self, reason: str, detail: str, kind: Kind | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.kind = kind


@dataclass(frozen=True, slots=True)
class Decoded:
    topic: ParsedTopic
    value: Any  # a schemas.Msg, a containers.* record, or bytes for ONNX artifacts


def decode(topics: Topics, topic: str, payload: bytes) -> Decoded:
    try:
        parsed = topics.parse(topic)
    except TopicError as exc:
        raise WireError("bad_topic", str(exc)) from None
    return Decoded(parsed, decode_parsed(parsed, payload))


def decode_parsed(parsed: ParsedTopic, payload: bytes) -> Any:
    """The payload of a message whose topic is ``parsed``: a schemas.Msg, a containers.* record, or
    bytes for ONNX artifacts. Raises :class:`WireError` (reason ``empty`` for a cleared retained topic)."""
    spec = SPEC_BY_KIND[parsed.kind]
    try:
        if spec.encoding == "tensor":
            value: Any = CONTAINERS[spec.payload].decode(payload)
        elif spec.encoding == "json":
            if not payload and spec.retain:
                # An empty retained payload is how MQTT clears a retained topic.
                raise WireError("empty", "empty retained payload (topic cleared)", parsed.kind)
            value = schemas.loads(payload, schemas.SCHEMAS[spec.payload])
        elif spec.encoding == "jpeg":
            value = _snapshot(parsed, payload)
        else:
            if not payload:
                raise WireError("empty", "empty artifact payload", parsed.kind)
            value = bytes(payload)
    except (schemas.SchemaError, codec.CodecError) as exc:
        raise WireError(exc.reason, str(exc), parsed.kind) from None
    _check_identity(parsed, value)
    return value


def _snapshot(parsed: ParsedTopic, payload: bytes) -> bytes:
    """A snapshot's JPEG: bounded, and a frame header that says what it is (read, not decoded)."""
    if not payload:
        raise WireError("empty", "empty retained payload (topic cleared)", parsed.kind)
    if len(payload) > rawsample.MAX_SNAPSHOT_BYTES:
        raise WireError("oversized", f"{len(payload)} bytes, at most {rawsample.MAX_SNAPSHOT_BYTES}", parsed.kind)
    try:
        rawsample.jpeg_dims(payload)
    except rawsample.RawError as exc:
        raise WireError(exc.reason, exc.detail, parsed.kind) from None
    return bytes(payload)


def _check_identity(t: ParsedTopic, v: Any) -> None:
    """The payload must agree with its topic: a device cannot speak for another in the body."""
    for attr in ("device", "stream", "task", "publisher"):
        want = getattr(t, attr)
        if want is None:
            continue
        got = getattr(v, attr, None)
        if got is not None and want != got:
            raise WireError("topic_mismatch", f"topic says {attr}={want!r}, payload says {got!r}", t.kind)


class Receiver:
    """An MQTT handler that decodes, counts and logs rejections, and passes good values on.

    Rejections are counted as ``rejected.<kind>.<reason>`` (kind ``unknown`` for bad topics),
    logged once per (kind, reason) at WARNING and then at DEBUG, so a flood of garbage cannot
    flood the log; the subscriber keeps going.
    """

    def __init__(self, topics: Topics, on_value: Callable[[Decoded, Any], None], counters: Counters) -> None:
        self.topics = topics
        self.on_value = on_value
        self.counters = counters
        self._warned: set[tuple[str, str]] = set()

    def __call__(self, msg: Any) -> None:
        try:
            decoded = decode(self.topics, msg.topic, msg.payload)
        except WireError as exc:
            kind = exc.kind.value if exc.kind else "unknown"
            if exc.reason == "empty":
                # An empty payload is how MQTT deletes a retained message: not an attack, not news.
                self.counters.inc(f"cleared.{kind}")
                return
            self.counters.inc(f"rejected.{kind}.{exc.reason}")
            level = logging.DEBUG if (kind, exc.reason) in self._warned else logging.WARNING
            self._warned.add((kind, exc.reason))
            log.log(level, "rejected %s on %s: %s", kind, msg.topic, exc.detail)
            return
        self.counters.inc(f"accepted.{decoded.topic.kind.value}")
        self.on_value(decoded, msg)
