"""Fixtures for the agent's tests: a started agent on the test's broker, a collector of what it publishes."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import Agent
from edge_agent.config import AgentConfig
from shared.protocol import schemas
from shared.protocol.topics import Kind, Topics
from shared.protocol.wire import decode
from shared.transport.broker import Broker
from shared.transport.mqtt import Message, MqttClient
from tests.edge.models import Release


def wait_until(pred: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Poll with a deadline (liveness only, never a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class Collector:
    """Everything published under a device's tree, decoded, in arrival order."""

    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self.lock = threading.Lock()
        self.items: list[tuple[Kind, Any, Message]] = []
        self.bad: list[tuple[str, str]] = []

    def __call__(self, msg: Message) -> None:
        try:
            d = decode(self.topics, msg.topic, msg.payload)
        except Exception as exc:  # recorded and asserted on by tests, not raised on the network thread
            with self.lock:
                self.bad.append((msg.topic, str(exc)))
            return
        with self.lock:
            self.items.append((d.topic.kind, d.value, msg))

    def of(self, kind: Kind) -> list[Any]:
        with self.lock:
            return [v for k, v, _ in self.items if k == kind]

    def msgs(self, kind: Kind) -> list[Message]:
        with self.lock:
            return [m for k, _, m in self.items if k == kind]

    def count(self, kind: Kind) -> int:
        return len(self.of(kind))


def publish_release(client: MqttClient, topics: Topics, rel: Release, *, artifact: bytes | None = None,
                    task: str = "digits") -> None:
    """What the cloud worker does: retained artifact first, then the retained manifest."""
    done = threading.Event()
    client.publish(topics.artifact(task, rel.version), rel.onnx if artifact is None else artifact, qos=1,
                   retain=True, on_ack=lambda rc: done.set())
    assert done.wait(10)
    done.clear()
    client.publish(topics.manifest(task), rel.wire, qos=1, retain=True, on_ack=lambda rc: done.set())
    assert done.wait(10)


def clear_retained(client: MqttClient, topic) -> None:
    done = threading.Event()
    client.publish(topic, b"", qos=1, retain=True, on_ack=lambda rc: done.set())
    assert done.wait(10)


@pytest.fixture
def make_agent(broker: Broker, topics: Topics, tmp_path: Path) -> Iterator[Callable[..., Agent]]:
    """Build and start an agent on the session broker (or ``target``); stopped and checked at teardown."""
    made: list[Agent] = []

    def make(*, task: str = "digits", source: dict | None = None, target: Broker | None = None,
             start: bool = True, **over: Any) -> Agent:
        b = target or broker
        data: dict[str, Any] = {
            "device": f"dev-{uuid.uuid4().hex[:6]}", "root": topics.root, "task": task, "stream": "front",
            "mqtt": {"host": "127.0.0.1", "port": b.port, "backoff_max": 0.5},
            "source": source or {"type": "replay", "split": "stream", "loop": False, "limit": 50},
            "capture": {"mode": "lossless", "queue_size": 8},
            "state_dir": str(tmp_path / f"agent{len(made)}"),
            "model": {"fetch_timeout_s": 3.0},
            "telemetry": {"interval_s": 0.5},
            # No bridge runs in these tests, so nobody gives custody: a PUBACK deletes a row, as with a
            # disk-backed broker. test_custody.py runs agents with custody against a real bridge.
            "outbox": {"custody": False},
        }
        for k, v in over.items():
            data[k] = {**data[k], **v} if isinstance(v, dict) and isinstance(data.get(k), dict) else v
        if "public_key" not in data["model"]:  # most of these tests publish unsigned models of their own
            data["model"] = {"allow_unsigned": True, **data["model"]}
        agent = Agent(AgentConfig.model_validate(data))
        made.append(agent)
        if start:
            agent.start()
            assert agent.client is not None and agent.client.wait_connected(10)
        return agent

    yield make
    errors: list[BaseException] = []
    for a in made:
        a.stop()
        errors.extend(a.errors)
        if a.client is not None:
            errors.extend(a.client.callback_errors)
    assert not errors, f"agent errors: {errors!r}"


@pytest.fixture
def collect(mqtt_factory) -> Callable[..., Collector]:
    def make(topics: Topics, device: str, target: Broker | None = None) -> Collector:
        col = Collector(topics)
        c = mqtt_factory(target=target) if target is not None else mqtt_factory()
        c.subscribe_and_wait(topics.device_tree(device), 1, col)
        return col

    return make


def preds_by_sample(col: Collector) -> dict[int, list[schemas.Prediction]]:
    out: dict[int, list[schemas.Prediction]] = {}
    for p in col.of(Kind.PRED):
        out.setdefault(p.sample, []).append(p)
    return out
