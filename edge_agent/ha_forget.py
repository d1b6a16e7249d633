"""``lepton-agent --forget-home-assistant``: remove a device from Home Assistant.

Home Assistant drops an entity when its retained discovery config is replaced by an empty one. This
reads back whatever configs the broker retains for this device under the discovery prefix (so it
needs neither the model nor the task's classes: a device renamed or repurposed is cleaned up too),
clears each with an empty retained message, and waits for every PUBACK.
"""

from __future__ import annotations

import threading
import time

from edge_agent.config import AgentConfig
from shared.protocol.topics import Topic, ha_configs
from shared.transport.mqtt import Message, MqttClient

SETTLE_S = 1.0  # the broker sends retained messages right after the SUBACK; wait this long for the last


def forget(cfg: AgentConfig, timeout: float = 10.0) -> int:
    """Clear every retained discovery config of ``cfg.device``; returns how many were cleared."""
    found: list[str] = []
    seen = threading.Event()

    def on_msg(msg: Message) -> None:
        if msg.retain and msg.payload:
            found.append(msg.topic)
            seen.set()

    # Its own client id: a running agent of the same device keeps its session.
    client = MqttClient(cfg.mqtt, client_id=f"{cfg.device}-ha-forget").start()
    try:
        if not client.wait_connected(timeout):
            raise OSError(f"cannot reach the broker at {cfg.mqtt.host}:{cfg.mqtt.port}")
        codes = client.subscribe_and_wait(ha_configs(cfg.home_assistant.prefix, cfg.device), 1, on_msg, timeout)
        if any(c >= 0x80 for c in codes):
            raise OSError("the broker refused to show this device's discovery topics (ACL)")
        time.sleep(SETTLE_S)
        done = threading.Semaphore(0)
        for topic in sorted(set(found)):
            client.publish(Topic(topic), b"", qos=1, retain=True, on_ack=lambda _rc: done.release())
        for _ in set(found):
            if not done.acquire(timeout=timeout):
                raise OSError("the broker did not acknowledge every cleared config")
        return len(set(found))
    finally:
        client.stop()
