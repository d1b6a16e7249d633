"""Put a registry version on the broker: artifact first, then the signed manifest, both
retained QoS 1 and each waited for (PUBACK), then clear artifacts older than the last few.

A staged rollout (cloud_worker/rollout/manager.py) also puts a version on its own manifest topic
(``model/{task}/version/{N}``) for the agents a release assigns it to, and keeps the artifacts of
the versions it still needs (``protect``) when old ones are cleared."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from cloud_worker.registry import Entry, Registry
from shared.protocol.topics import Topic, Topics
from shared.transport.mqtt import MqttClient, MqttError

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
        self.protect: Callable[[str], set[int]] = lambda task: set()  # versions whose artifacts must stay

    def _send(self, topic: Topic, payload: bytes, *, retain: bool = True) -> None:
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
            self.client.publish(topic, payload, qos=1, retain=retain, on_ack=acked)
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

    def publish_version(self, entry: Entry) -> None:
        """The artifact, then the manifest on the version's own topic (a release assigns it to some agents)."""
        task = entry.record["task"]
        with self._lock:
            if entry.record.get("artifact_cleared"):
                self.registry.update(task, entry.version, artifact_cleared=False)
            self._send(self.topics.artifact(task, entry.version), entry.onnx)
            self._send(self.topics.model_version(task, entry.version), entry.manifest_raw)
            self.client.counters.inc("publish.version_manifests")

    def clear_version(self, task: str, version: int, *, artifact: bool) -> None:
        """Withdraw a version's own manifest (and its artifact): no agent is offered it any more."""
        with self._lock:
            self._send(self.topics.model_version(task, version), b"")
            if artifact:
                self._send(self.topics.artifact(task, version), b"")
                self.registry.update(task, version, artifact_cleared=True)
            self.client.counters.inc("publish.versions_withdrawn")

    def send(self, topic: Topic, payload: bytes, *, retain: bool) -> None:
        """One message (a release or a rollout event), QoS 1, waited for."""
        with self._lock:
            self._send(topic, payload, retain=retain)

    def _clear_old(self, task: str, newest: int) -> None:
        keep = self.protect(task)
        for v in self.registry.versions(task):
            if v > newest - self.keep:
                break
            if v in keep or self.registry.get(task, v).record.get("artifact_cleared"):
                continue
            self._send(self.topics.artifact(task, v), b"")  # an empty retained payload deletes it
            self.registry.update(task, v, artifact_cleared=True)
            self.client.counters.inc("publish.artifacts_cleared")
