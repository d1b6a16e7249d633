"""Shared fixtures: a real mosquitto per test session (or per test), unique topic roots, clients.

Set LEPTON_TEST_BROKER=testcontainers to run the session broker as a container (the engine
DOCKER_HOST names; scripts/test-deploy.sh uses podman's socket); the default is the local
`mosquitto` binary with mosquitto/test.conf.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from shared.protocol.topics import Topics
from shared.transport.broker import Broker
from shared.transport.mqtt import MqttClient, MqttSettings

# Read once and removed: every LEPTON_* variable is a config override for the services the
# tests start (shared.process.config), and they refuse keys they do not know.
BROKER_MODE = os.environ.pop("LEPTON_TEST_BROKER", "local")
BROKER_IMAGE = os.environ.pop("LEPTON_TEST_BROKER_IMAGE", "eclipse-mosquitto:2")


class _ContainerBroker:  # pragma: no cover - needs a container engine (scripts/test-deploy.sh runs it)
    """mosquitto in a container, for LEPTON_TEST_BROKER=testcontainers.

    The engine is whatever DOCKER_HOST names (scripts/test-deploy.sh: podman's docker-compatible
    socket, Ryuk off). The image is LEPTON_TEST_BROKER_IMAGE, default eclipse-mosquitto:2 (the
    official image, or the local stand-in scripts/images.sh builds where no registry answers).
    The broker gets mosquitto/test.conf with only the listener opened inside the container;
    its port is published on 127.0.0.1 only.
    """

    def __init__(self) -> None:
        import time

        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion
        from testcontainers.core.container import DockerContainer

        from shared.transport.broker import free_port

        conf = Path(__file__).resolve().parent.parent / "mosquitto" / "test.conf"
        text = conf.read_text().replace("listener 1883 127.0.0.1", "listener 1883 0.0.0.0")
        self._tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"lepton-mq-{uuid.uuid4().hex[:6]}.conf"
        self._tmp.write_text(text.replace("persistence_location /var/lib/mosquitto/", "persistence_location /tmp/"))
        self._tmp.chmod(0o644)
        self.host, self.port = "127.0.0.1", free_port()
        self.c = DockerContainer(BROKER_IMAGE).with_volume_mapping(str(self._tmp), "/mosquitto/config/mosquitto.conf")
        # Loopback only: with_bind_ports() takes a bare port and would publish on 0.0.0.0; the
        # mapping goes to the docker SDK as is, which reads (address, port) tuples.
        self.c.ports["1883/tcp"] = (self.host, self.port)  # type: ignore[assignment]
        self.c.start()
        deadline = time.monotonic() + 30
        while True:  # serving once an MQTT CONNECT is answered through the published port
            probe = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"probe-{uuid.uuid4().hex[:6]}")
            try:
                probe.connect(self.host, self.port, keepalive=10)
                probe.disconnect()
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.3)

    def stop(self) -> None:
        self.c.stop()
        self._tmp.unlink(missing_ok=True)


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """One mosquitto for the whole session; tests isolate themselves with a unique topic root."""
    if BROKER_MODE == "testcontainers":  # pragma: no cover
        b = _ContainerBroker()
        yield b  # type: ignore[misc]
        b.stop()
        return
    b = Broker(tmp_path_factory.mktemp("mosquitto")).start()
    yield b
    b.stop()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Broker]:
    """A broker of the test's own, for tests that stop, kill or restart it."""
    b = Broker(tmp_path / "mosquitto").start()
    yield b
    b.stop()


@pytest.fixture
def topics() -> Topics:
    """A unique root under lepton/v1, so `mosquitto_sub -t 'lepton/v1/#'` still sees every test."""
    return Topics(f"lepton/v1/t{uuid.uuid4().hex[:10]}")


def settings_for(b: Broker, **kw: object) -> MqttSettings:
    return MqttSettings(host=getattr(b, "host", "127.0.0.1"), port=b.port, **kw)


@pytest.fixture
def mqtt_factory(broker: Broker) -> Iterator[Callable[..., MqttClient]]:
    """Make started, connected clients; at teardown stop them and fail on swallowed handler errors."""
    made: list[MqttClient] = []

    def make(client_id: str | None = None, target: Broker | None = None, connect: bool = True,
             **kw: object) -> MqttClient:
        c = MqttClient(settings_for(target or broker, **kw), client_id=client_id or f"t-{uuid.uuid4().hex[:8]}")
        made.append(c)
        c.start()
        if connect:
            assert c.wait_connected(10), f"could not connect: {c.last_connect_error}"
        return c

    yield make
    errors = []
    for c in made:
        c.stop()
        errors.extend(c.callback_errors)
    assert not errors, f"exceptions swallowed in MQTT callbacks: {errors!r}"
