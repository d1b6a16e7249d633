"""A real mosquitto running mosquitto/secure.conf, with identities made by `lepton provision`.

One broker per test session (startup is ~0.1 s, provisioning a few ms per identity): the
identities are provisioned through the real CLI, so these tests also cover the bundle
format. The broker listens on three free loopback ports: password, mutual TLS, TLS+password.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from lepton_cli.main import main as lepton
from lepton_cli.secure_broker import SecureBroker
from shared.process.config import tomllib  # tomllib on 3.11+, tomli on 3.10
from shared.protocol.topics import Filter, Topic, Topics
from shared.transport.mqtt import Message, MqttClient, MqttSettings, TlsSettings

IDENTITIES = ("d1", "d2", "bridge_1", "bridge_1-bulk", "worker_1", "labeller_1", "operator_1", "console_1", "monitor_1", "monitor_2",
              "homeassistant_1")
ROOT = "lepton/v1"


@dataclass
class SecureEnv:
    base: Path
    broker: SecureBroker
    topics: Topics

    @property
    def broker_dir(self) -> Path:
        return self.base / "broker"

    @property
    def keys_dir(self) -> Path:
        return self.base / "keys"

    def bundle(self, identity: str) -> Path:
        return self.base / "bundles" / identity

    def config(self, identity: str) -> dict:
        name = "service.toml" if "_" in identity else "device.toml"
        return tomllib.loads((self.bundle(identity) / name).read_text())

    def settings(self, identity: str, listener: str = "password", **over: object) -> MqttSettings:
        """Settings from the identity's bundle, pointed at one of the broker's listeners."""
        mqtt = dict(self.config(identity)["mqtt"])
        mqtt.pop("tls", None)
        b = self.bundle(identity)
        port = {"password": self.broker.port, "mtls": self.broker.mtls_port, "tls": self.broker.tls_port}[listener]
        tls = None
        if listener == "mtls":
            tls = TlsSettings(ca=b / "ca.crt", cert=b / "client.crt", key=b / "client.key")
        elif listener == "tls":
            tls = TlsSettings(ca=b / "ca.crt")
        mqtt.update(host="127.0.0.1", port=port, tls=tls, backoff_min=0.05, backoff_max=0.5, connect_timeout=2)
        mqtt.update(over)
        return MqttSettings(**mqtt)


def provision(base: Path, identity: str, *extra: str) -> int:
    return lepton(["provision", identity, "--broker-dir", str(base / "broker"), "--out", str(base / "bundles" / identity),
                   "--signing-pub", str(base / "keys" / "signing.pub"), "--root", ROOT, *extra])


@pytest.fixture(scope="session")
def secure_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureEnv]:
    base = tmp_path_factory.mktemp("secure")
    assert lepton(["keys", "init", "--dir", str(base / "keys")]) == 0
    for ident in IDENTITIES:
        assert provision(base, ident) == 0, ident
    broker = SecureBroker(base / "run", base / "broker").start()
    yield SecureEnv(base, broker, Topics(ROOT))
    broker.stop()


@dataclass
class Inbox:
    """Messages one client received, with a condition to wait on."""

    messages: list[Message] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, msg: Message) -> None:
        with self.cond:
            self.messages.append(msg)
            self.cond.notify_all()

    def wait_for(self, pred: Callable[[list[Message]], bool], timeout: float = 5.0) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: pred(self.messages), timeout)

    def topics(self) -> set[str]:
        with self.cond:
            return {m.topic for m in self.messages}


@pytest.fixture
def connect(secure_env: SecureEnv) -> Iterator[Callable[..., MqttClient]]:
    """connect(identity, listener="password", wait=True, client_id=None, **settings) -> started client."""
    made: list[MqttClient] = []

    def make(identity: str, listener: str = "password", *, wait: bool = True, client_id: str | None = None,
             **over: object) -> MqttClient:
        c = MqttClient(secure_env.settings(identity, listener, **over),
                       client_id=client_id or f"{identity}-{uuid.uuid4().hex[:6]}")
        made.append(c)
        c.start()
        if wait:
            assert c.wait_connected(10), f"{identity} could not connect: {c.last_connect_error}"
        return c

    yield make
    errors = []
    for c in made:
        c.stop()
        errors.extend(c.callback_errors)
    assert not errors, f"exceptions swallowed in MQTT callbacks: {errors!r}"


def publish_ack(client: MqttClient, topic: Topic, payload: bytes = b"x", *, retain: bool = False,
                timeout: float = 5.0) -> int:
    """Publish at QoS 1 and return the PUBACK reason code (0x87 = not authorized)."""
    done = threading.Event()
    code: list[int] = []
    client.publish(topic, payload, qos=1, retain=retain, on_ack=lambda rc: (code.append(rc), done.set()))
    assert done.wait(timeout), f"no PUBACK for {topic}"
    return code[0]


def subscribe(client: MqttClient, flt: Filter | str) -> tuple[Inbox, list[int]]:
    inbox = Inbox()
    codes = client.subscribe_and_wait(flt if isinstance(flt, Filter) else Filter(flt), 1, inbox)
    return inbox, codes


def never_connects(client: MqttClient, seconds: float = 2.0) -> bool:
    """True if the client stays unconnected (it keeps retrying) for ``seconds``."""
    return not client.wait_connected(seconds)
