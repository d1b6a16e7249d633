"""An agent with Home Assistant on announces its entities (retained) and sends alert snapshots; removing it
clears them. On a real broker; a real Home Assistant reads the same in tests/integrations."""

from __future__ import annotations

import json
import threading

import pytest

from edge_agent.ha_forget import forget
from lepton_tasks import load_task
from shared.protocol import rawsample
from shared.protocol.topics import ha_configs
from shared.transport.mqtt import Message

from .conftest import publish_release, wait_until
from .models import release

pytestmark = pytest.mark.broker


class Retained:
    def __init__(self) -> None:
        self.msgs: dict[str, bytes] = {}
        self.lock = threading.Lock()

    def __call__(self, msg: Message) -> None:
        with self.lock:
            if msg.payload:
                self.msgs[msg.topic] = msg.payload
            else:
                self.msgs.pop(msg.topic, None)


def test_an_agent_announces_its_entities_sends_alert_snapshots_and_forget_clears_them(
        make_agent, topics, mqtt_factory, broker):
    digits = load_task("digits")
    rel = release(topics, "digits", 1, cloud=digits.cloud_input())
    ctl = mqtt_factory()
    publish_release(ctl, topics, rel)
    agent = make_agent(home_assistant={"enabled": True, "hold_s": 5},
                       snapshots={"min_interval_s": 0.0},
                       source={"type": "replay", "split": "stream", "loop": True, "fps": 50},
                       events={"alert_classes": ["0"]})
    dev = agent.cfg.device
    seen = Retained()
    watcher = mqtt_factory()
    watcher.subscribe_and_wait(ha_configs("homeassistant", dev), 1, seen)
    watcher.subscribe_and_wait(topics.snapshot(dev, "front", "0"), 1, seen)
    configs = wait_until(lambda: {t: json.loads(p) for t, p in seen.msgs.items() if t.endswith("/config")}
                         if len(seen.msgs) >= 6 else None, 30, "discovery configs")
    assert f"homeassistant/binary_sensor/{dev}/digits_0/config" in configs
    assert f"homeassistant/image/{dev}/digits_0_snapshot/config" in configs  # digits frames: an image task
    assert all(c["device"]["sw_version"] == "model v1" for c in configs.values())
    snap = wait_until(lambda: seen.msgs.get(str(topics.snapshot(dev, "front", "0"))), 30,
                      f"a snapshot of class 0; counters {agent.counters.snapshot()} errors {agent.errors}")
    assert rawsample.decode_jpeg(snap).shape == (64, 64, 3)
    assert agent.counters.get("snapshot.sent") >= 1
    agent.stop()
    n = forget(agent.cfg, timeout=10)
    assert n >= 6
    wait_until(lambda: not any(t.endswith("/config") for t in seen.msgs), 10, "configs cleared")
    # A fresh subscriber sees nothing retained for this device any more.
    again = Retained()
    mqtt_factory().subscribe_and_wait(ha_configs("homeassistant", dev), 1, again)
    assert not again.msgs


def test_home_assistant_is_off_by_default(make_agent, topics, mqtt_factory):
    rel = release(topics, "digits", 1)
    publish_release(mqtt_factory(), topics, rel)
    agent = make_agent()
    assert agent.wait_model(20)
    seen = Retained()
    mqtt_factory().subscribe_and_wait(ha_configs("homeassistant", agent.cfg.device), 1, seen)
    assert agent.counters.get("home_assistant.sent") == 0 and not seen.msgs
