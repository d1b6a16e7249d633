"""Home Assistant discovery payloads: one config per entity, each tied to the device's birth and will."""

from __future__ import annotations

import json

import pytest

from shared.protocol import homeassistant as ha
from shared.protocol.topics import TopicError, Topics, ha_config
from shared.security import acl


def _entities(image: bool = True, classes=("empty", "person", "car", "animal"), alerts=("person", "car")):
    return ha.DeviceEntities("cam-1", "camera", "front", tuple(classes), tuple(alerts), 7, image=image, hold_s=15)


def test_each_alert_class_gets_a_binary_sensor_and_on_an_image_task_a_snapshot_image():
    out = {str(t): json.loads(p) for t, p in ha.discovery(_entities(), Topics())}
    assert set(out) == {
        "homeassistant/binary_sensor/cam-1/camera_person/config", "homeassistant/binary_sensor/cam-1/camera_car/config",
        "homeassistant/image/cam-1/camera_person_snapshot/config", "homeassistant/image/cam-1/camera_car_snapshot/config",
        "homeassistant/sensor/cam-1/camera_class/config", "homeassistant/sensor/cam-1/camera_confidence/config",
        "homeassistant/sensor/cam-1/camera_model_version/config", "homeassistant/sensor/cam-1/escalation_ratio/config"}
    person = out["homeassistant/binary_sensor/cam-1/camera_person/config"]
    assert person["state_topic"] == "lepton/v1/edge/cam-1/event/front" and person["off_delay"] == 15
    assert '"person"' in person["value_template"] and "ON" in person["value_template"]
    img = out["homeassistant/image/cam-1/camera_person_snapshot/config"]
    assert img["image_topic"] == "lepton/v1/edge/cam-1/snapshot/front/person" and img["content_type"] == "image/jpeg"
    for cfg in out.values():
        assert cfg["availability"][0]["topic"] == "lepton/v1/edge/cam-1/status"
        assert cfg["device"]["identifiers"] == ["lepton-cam-1"] and cfg["device"]["sw_version"] == "model v7"
    assert len({c["unique_id"] for c in out.values()}) == len(out)
    klass = out["homeassistant/sensor/cam-1/camera_class/config"]["value_template"]
    assert '["empty", "person", "car", "animal"][value_json.label]' in klass


def test_a_window_task_gets_no_image_and_odd_class_names_become_distinct_safe_ids():
    e = _entities(image=False, classes=("Normal beat", "Normal-beat!", "R on T"), alerts=("R on T",))
    topics = [str(t) for t, _ in ha.discovery(e, Topics())]
    assert not any("/image/" in t for t in topics)
    assert "homeassistant/binary_sensor/cam-1/camera_r_on_t/config" in topics
    assert ha.class_slugs(e.classes) == {"Normal beat": "normal_beat", "Normal-beat!": "normal_beat_1",
                                         "R on T": "r_on_t"}


def test_removal_names_every_config_topic_and_discovery_topics_are_validated():
    e = _entities()
    assert ha.removal(e, Topics()) == [t for t, _ in ha.discovery(e, Topics())]
    with pytest.raises(TopicError):
        ha_config("homeassistant", "switch", "cam-1", "x")  # not a component Lepton announces
    with pytest.raises(TopicError):
        ha_config("homeassistant", "sensor", "cam/1", "x")


def test_a_device_may_write_only_its_own_discovery_topics_and_home_assistant_reads_what_it_needs():
    root = "lepton/v1"
    own = str(ha_config("homeassistant", "binary_sensor", "cam-1", "camera_person"))
    other = str(ha_config("homeassistant", "binary_sensor", "cam-2", "camera_person"))
    assert acl.allowed("cam-1", acl.Access.WRITE, own, root)
    assert not acl.allowed("cam-1", acl.Access.WRITE, other, root)
    assert not acl.allowed("cam-1", acl.Access.WRITE, "homeassistant/status", root)
    assert acl.allowed("cam-1", acl.Access.WRITE, f"{root}/edge/cam-1/snapshot/front/person", root)
    assert not acl.allowed("cam-1", acl.Access.WRITE, f"{root}/edge/cam-2/snapshot/front/person", root)
    for topic in (own, f"{root}/edge/cam-2/status", f"{root}/edge/cam-2/event/front",
                  f"{root}/edge/cam-2/snapshot/front/person", f"{root}/edge/cam-2/telemetry"):
        assert acl.allowed("homeassistant_1", acl.Access.READ, topic, root), topic
    assert acl.allowed("homeassistant_1", acl.Access.WRITE, "homeassistant/status", root)
    for topic in (f"{root}/edge/cam-2/hard/front", f"{root}/model/camera/manifest", f"{root}/label/cam-2/front"):
        assert not acl.allowed("homeassistant_1", acl.Access.WRITE, topic, root), topic
    assert not acl.allowed("homeassistant_1", acl.Access.READ, f"{root}/edge/cam-2/hard/front", root)
