"""Put a registry version on the broker: artifact first, then the signed manifest, both
retained QoS 1 and each waited for (PUBACK), then clear artifacts older than the last few."""

from __future__ import annotations

import logging
import threading
import time

from shared.mqtt import MqttClient, MqttError
from shared.topics import Topic, Topics

from .registry import Entry, Registry

log = logging.getLogger(__name__)


class PublishError(RuntimeError):
    pass


class Publisher:
    def __init__(self, client: MqttClient, topics: Topics, registry: Registry, *, timeout: float = 10.0,
                 keep: int = 2, abort: threading.Event | None = None) -> None:
        self.abort = abort or threading.Event()  # set on shutdown: stop waiting for a broker
        self.client = client
        self.topics = topics
        self.registry = registry
        self.timeout = timeout
        self.keep = keep
        self._lock = threading.Lock()  # one version at a time: artifact/manifest order must not interleave

    def _send(self, topic: Topic, payload: bytes) -> None:
        done = threading.Event()
        code: list[int] = []

        def acked(rc: int) -> None:
            code.append(rc)
            done.set()

        deadline = time.monotonic() + self.timeout
        while not self.client.wait_connected(0.1):
            if self.abort.is_set() or time.monotonic() > deadline:
                raise PublishError(f"not connected to the broker; {topic} not published")
        try:
            self.client.publish(topic, payload, qos=1, retain=True, on_ack=acked)
        except MqttError as exc:
            raise PublishError(f"{topic}: {exc}") from None
        while not done.wait(0.1):
            if self.abort.is_set() or time.monotonic() > deadline:
                raise PublishError(f"no PUBACK for {topic} within {self.timeout}s")
        if code and code[0] >= 0x80:
            raise PublishError(f"broker refused {topic}: reason {code[0]:#x}")

    def publish(self, entry: Entry) -> None:
        task = entry.record["task"]
        with self._lock:
            # The artifact first: an agent that sees the manifest must find the bytes already retained.
            self._send(self.topics.artifact(task, entry.version), entry.onnx)
            self._send(self.topics.manifest(task), entry.manifest_raw)
            self.registry.update(task, entry.version, published=time.time())
            self.client.counters.inc("publish.versions")
            self._clear_old(task, entry.version)

    def _clear_old(self, task: str, newest: int) -> None:
        for v in self.registry.versions(task):
            if v > newest - self.keep:
                break
            if self.registry.get(task, v).record.get("artifact_cleared"):
                continue
            self._send(self.topics.artifact(task, v), b"")  # an empty retained payload deletes it
            self.registry.update(task, v, artifact_cleared=True)
            self.client.counters.inc("publish.artifacts_cleared")
