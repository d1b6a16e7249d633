"""Home Assistant MQTT discovery: the retained configs that make a Lepton device appear there by itself.

A device announces, per task it serves, under ``<prefix>/<component>/<device>/<object_id>/config``:

- a ``binary_sensor`` per alert class, on while that class's events arrive (each event turns it on,
  ``off_delay`` turns it off after the hold): "person at cam-1";
- a ``sensor`` for the last class and one for its confidence, from the predictions;
- diagnostic sensors for the model version and the escalation ratio, from telemetry;
- an ``image`` per alert class of an image task: the frame of that class's newest event
  (``edge/{device}/snapshot/{stream}/{class}``).

Every entity's availability is the device's own birth and last will (``edge/{device}/status``), and its
device block carries the model version as ``sw_version``. Entities follow topics Lepton already
publishes; nothing is sent twice for Home Assistant's sake. Pure: payloads in, nothing sent.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shared.protocol.topics import HA_PREFIX, Topic, Topics, ha_config

_SLUG = re.compile(r"[^a-z0-9_]+")


def slug(name: str) -> str:
    """A class name as a topic segment and entity id: lower case, [a-z0-9_], at most 40 characters."""
    s = _SLUG.sub("_", name.lower()).strip("_")[:40]
    return s or "class"


def class_slugs(classes: tuple[str, ...]) -> dict[str, str]:
    """Class name -> its slug, unique (a second ``Person!`` next to ``person`` gets its index)."""
    out: dict[str, str] = {}
    for i, c in enumerate(classes):
        s = slug(c)
        out[c] = f"{s[:36]}_{i}" if s in out.values() else s
    return out


@dataclass(frozen=True)
class DeviceEntities:
    """What a device serves, as Home Assistant should see it."""

    device: str
    task: str
    stream: str
    classes: tuple[str, ...]
    alert_classes: tuple[str, ...]
    model_version: int
    image: bool  # an image task: its alert classes get a snapshot entity
    hold_s: int = 10  # seconds a binary sensor stays on after its class's last event
    prefix: str = HA_PREFIX


def discovery(e: DeviceEntities, topics: Topics) -> list[tuple[Topic, bytes]]:
    """(topic, retained payload) of every entity of ``e``; publish each retained, QoS 1."""
    dev, task = e.device, e.task
    base = {
        "availability": [{"topic": str(topics.status(dev)), "value_template": "{{ value_json.state }}",
                          "payload_available": "online", "payload_not_available": "offline"}],
        "device": {"identifiers": [f"lepton-{dev}"], "name": dev, "manufacturer": "Lepton",
                   "model": f"Lepton edge agent ({task})", "sw_version": f"model v{e.model_version}"},
        "origin": {"name": "Lepton"},
    }
    slugs = class_slugs(e.classes)
    out: list[tuple[Topic, bytes]] = []

    def add(component: str, object_id: str, cfg: dict) -> None:
        unique = f"lepton_{dev.replace('-', '_')}_{object_id}"
        payload = {**cfg, **base, "unique_id": unique, "object_id": unique}
        out.append((ha_config(e.prefix, component, dev, object_id), json.dumps(payload, sort_keys=True).encode()))

    event_topic = str(topics.event(dev, e.stream))
    for c in e.alert_classes:
        if c not in slugs:
            continue
        s = slugs[c]
        # An event of another alert class renders nothing, which Home Assistant ignores: it must not
        # switch this class off.
        add("binary_sensor", f"{task}_{s}", {
            "name": c, "state_topic": event_topic, "off_delay": int(e.hold_s),
            "value_template": "{% if value_json.name == " + json.dumps(c) + " %}ON{% endif %}",
            "payload_on": "ON", "payload_off": "OFF"})
        if e.image:
            add("image", f"{task}_{s}_snapshot", {
                "name": f"{c} snapshot", "image_topic": str(topics.snapshot(dev, e.stream, s)),
                "content_type": "image/jpeg"})
    pred_topic = str(topics.pred(dev, e.stream))
    add("sensor", f"{task}_class", {
        "name": f"{task} class", "state_topic": pred_topic, "icon": "mdi:label-outline",
        "value_template": "{{ " + json.dumps(list(e.classes)) + "[value_json.label] }}"})
    add("sensor", f"{task}_confidence", {
        "name": f"{task} confidence", "state_topic": pred_topic, "unit_of_measurement": "%",
        "state_class": "measurement", "value_template": "{{ (value_json.confidence * 100) | round(1) }}"})
    tel = str(topics.telemetry(dev))
    add("sensor", f"{task}_model_version", {
        "name": f"{task} model version", "state_topic": tel, "entity_category": "diagnostic",
        "value_template": "{{ value_json.models[" + json.dumps(task) + "] | default(0) }}"})
    add("sensor", "escalation_ratio", {
        "name": "escalation ratio", "state_topic": tel, "entity_category": "diagnostic",
        "unit_of_measurement": "%", "state_class": "measurement",
        "value_template": "{{ (value_json.escalation_ratio * 100) | round(1) }}"})
    return out


def removal(e: DeviceEntities, topics: Topics) -> list[Topic]:
    """The discovery topics of ``e``: an empty retained payload on each removes the entity."""
    return [t for t, _ in discovery(e, topics)]
