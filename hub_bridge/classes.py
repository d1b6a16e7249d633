"""Priority classes and the topic -> class routing table."""

from __future__ import annotations

from shared.protocol.topics import Kind

EVENT, ESCALATION, LABEL, FEATURE, TELEMETRY = range(5)
CLASS_NAMES = ("event", "escalation", "label", "feature", "telemetry")
STATUS = -1  # consumed inline (devices online), never queued

CLASS_OF_KIND: dict[Kind, int] = {
    Kind.EVENT: EVENT,
    Kind.HARD: ESCALATION,
    Kind.LABEL: LABEL,
    Kind.FEAT: FEATURE,
    Kind.TELEMETRY: TELEMETRY,
    Kind.MODEL_STATE: TELEMETRY,
    Kind.PRED: TELEMETRY,
    Kind.STATUS: STATUS,
}
