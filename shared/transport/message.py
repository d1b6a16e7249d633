"""One received MQTT message, as every Lepton client hands it on: a frozen record, free of paho.

Its own module so that both receive paths (shared.transport.mqtt's paho callbacks and
shared.transport.mqtt_fast's parser) build it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Message:
    """One received message, copied out of paho so it can cross threads."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    response_topic: str | None = None
    correlation_data: bytes | None = None
    user_properties: tuple[tuple[str, str], ...] = ()
    message_expiry: int | None = None
    mid: int = 0  # packet id, for MqttClient.ack with manual_ack
