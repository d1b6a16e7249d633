"""`docker compose up` without Docker: every compose service's command, environment and
healthcheck, run as native processes against a local mosquitto started from compose.conf.

What is translated, and nothing else: the compose host name `mosquitto` and port 1883 become the
local broker; the console's 8765 becomes a free port (LEPTON_CONSOLE__PORT, read by the console and
its healthcheck); container paths become temporary directories (named volumes, the image's state
dir), copies of the bind-mounted config files (with the same path translation inside) and, for
/usr/local/lib/lepton, this repo's docker/ directory (what the Dockerfiles COPY there).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.protocol.schemas import Manifest, ModelState, ServiceStatus, Status, loads
from shared.protocol.topics import Filter, Kind, Topics
from shared.security.signing import load_public, verify_manifest_obj
from shared.transport.broker import Broker, free_port
from shared.transport.mqtt import MqttClient, MqttSettings

from .conftest import REPO, load_compose

pytestmark = pytest.mark.slow

START_ORDER = ("keygen", "bridge", "console", "worker", "agent-1", "agent-2")
IMAGE_PATHS = {"/usr/local/lib/lepton": REPO / "docker"}  # COPY docker/*.py in every Dockerfile
STATE_DIR = "/var/lib/lepton"  # the images' WORKDIR, writable by the service user
DEADLINE_S = 240.0  # liveness only: bootstrap trains v1 on 2 cores


class NativeService:
    """One compose service as a local process: translated command, environment and healthcheck."""

    def __init__(self, name: str, spec: dict, tmp: Path, broker_port: int) -> None:
        self.name, self.spec, self.port = name, spec, broker_port
        self.console_port = free_port() if name == "console" else None
        self.paths: dict[str, Path] = dict(IMAGE_PATHS)
        self.paths[STATE_DIR] = tmp / "state" / name
        for vol in spec.get("volumes", []):
            src, dst, *_ = vol.split(":")
            if src.startswith("./"):
                continue
            self.paths[dst] = tmp / "volumes" / src
        for vol in spec.get("volumes", []):  # bind-mounted configs, rewritten with the paths above
            src, dst, *_ = vol.split(":")
            if src.startswith("./"):
                copy = tmp / "binds" / name / Path(src).name
                copy.parent.mkdir(parents=True, exist_ok=True)
                copy.write_text(self.translate((REPO / src).read_text()))
                self.paths[dst] = copy
        for p in self.paths.values():
            if p.suffix == "" and not p.is_relative_to(REPO):
                p.mkdir(parents=True, exist_ok=True)
        self.log_path = tmp / "logs" / f"{name}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen | None = None

    def translate(self, s: str) -> str:
        # Compose's own ${VAR:-default} interpolation, from the host environment, as compose does it.
        s = re.sub(r"\$\{(\w+):-([^}]*)\}", lambda m: os.environ.get(m.group(1)) or m.group(2), s)
        for cpath in sorted(self.paths, key=len, reverse=True):
            s = s.replace(cpath, str(self.paths[cpath]))
        return s

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        for k, v in (self.spec.get("environment") or {}).items():
            v = str(v)
            if k == "LEPTON_MQTT__HOST" and v == "mosquitto":
                v = "127.0.0.1"
            elif k == "LEPTON_MQTT__PORT" and v == "1883":
                v = str(self.port)
            env[k] = self.translate(v)
        if self.console_port is not None:
            env["LEPTON_CONSOLE__PORT"] = str(self.console_port)
        return env

    def start(self) -> None:
        cmd = [self.translate(a) for a in self.spec["command"]]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(cmd, env=self.env(), cwd=self.paths[STATE_DIR], stdout=log,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)

    def healthy(self) -> bool:
        test = self.spec["healthcheck"]["test"]
        assert test[0] == "CMD"
        res = subprocess.run([self.translate(a) for a in test[1:]], env=self.env(), capture_output=True, text=True,
                             timeout=30, cwd=self.paths[STATE_DIR])
        return res.returncode == 0

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def tail(self, n: int = 25) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()[-n:]
        except OSError:
            lines = []
        return f"--- {self.name} (exit {self.exited()}) ---\n" + "\n".join(lines)


@pytest.fixture
def compose_broker(tmp_path: Path) -> Iterator[Broker]:
    """mosquitto with compose.conf (its listener rendered onto loopback and a free port)."""
    b = Broker(tmp_path / "mosquitto", config=REPO / "mosquitto" / "compose.conf").start()
    yield b
    b.stop()


def wait_until(pred, services: list[NativeService], what: str, deadline: float) -> None:
    while time.monotonic() < deadline:
        for s in services:
            if s.name != "keygen" and s.exited() is not None:
                pytest.fail(f"{s.name} exited while waiting for {what}\n" + "\n".join(x.tail() for x in services))
        if pred():
            return
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}\n" + "\n".join(x.tail() for x in services))


def retained(port: int, flt: Filter, count: int, timeout: float = 10.0) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(msg) -> None:
        if msg.retain:
            got[msg.topic] = msg.payload
            if len(got) >= count:
                done.set()

    c = MqttClient(MqttSettings(host="127.0.0.1", port=port), client_id=f"stack-check-{uuid.uuid4().hex[:8]}")
    c.subscribe(flt, 1, on_message)
    c.start()
    try:
        assert c.wait_connected(10)
        done.wait(timeout)
    finally:
        c.stop()
    return got


def test_compose_stack_runs_natively(compose_broker: Broker, tmp_path: Path) -> None:
    # Prepare
    services_spec = load_compose()["services"]
    assert set(services_spec) == {"mosquitto", *START_ORDER}
    broker_svc = services_spec["mosquitto"]["healthcheck"]["test"][1:]
    broker_check = [str(compose_broker.port) if a == "1883" else a.replace("$$", "$") for a in broker_svc]
    services = [NativeService(n, services_spec[n], tmp_path, compose_broker.port) for n in START_ORDER]
    by_name = {s.name: s for s in services}
    deadline = time.monotonic() + DEADLINE_S
    t = Topics()

    try:
        # Execute, in depends_on order
        assert subprocess.run(broker_check, capture_output=True, timeout=30).returncode == 0, "broker healthcheck"
        keygen = by_name["keygen"]
        keygen.start()
        assert keygen.proc is not None and keygen.proc.wait(60) == 0, keygen.tail()
        by_name["bridge"].start()
        wait_until(by_name["bridge"].healthy, services, "bridge healthy", deadline)
        by_name["console"].start()
        wait_until(by_name["console"].healthy, services, "console healthy", deadline)
        by_name["worker"].start()
        for a in ("agent-1", "agent-2"):
            by_name[a].start()
        for name in ("worker", "agent-1", "agent-2"):
            wait_until(by_name[name].healthy, services, f"{name} healthy", deadline)

        # The point of the stack: the signed model reaches both agents and they load it.
        def models() -> dict[str, ModelState]:
            got = retained(compose_broker.port, t.edge_kind(Kind.MODEL_STATE), 2, timeout=2)
            return {m.device: m for m in (loads(p, ModelState) for p in got.values())}

        wait_until(lambda: {d: (m.state, m.version >= 1) for d, m in models().items()} ==
                   {"cam-1": ("loaded", True), "cam-2": ("loaded", True)}, services, "agents loaded the model",
                   deadline)

        # Assert, independently of the healthcheck script
        statuses = retained(compose_broker.port, t.statuses(), 2)
        model_states = models()
        hub = retained(compose_broker.port, Filter(str(t.hub_status())), 1)
        manifests = retained(compose_broker.port, t.manifests("digits"), 1)
    finally:
        for s in reversed(services):
            s.stop()

    assert {loads(p, Status).device: loads(p, Status).state for p in statuses.values()} == \
        {"cam-1": "online", "cam-2": "online"}
    bridge = loads(hub[str(t.hub_status())], ServiceStatus)
    assert (bridge.service, bridge.state) == ("bridge", "online")
    (wire,) = manifests.values()
    manifest = loads(wire, Manifest)
    assert manifest.task == "digits" and manifest.version >= 1
    assert {d: (m.task, m.version) for d, m in model_states.items()} == \
        {"cam-1": ("digits", manifest.version), "cam-2": ("digits", manifest.version)}
    pub = by_name["agent-1"].paths["/etc/lepton/keys"] / "signing.pub"
    verify_manifest_obj(json.loads(wire), load_public(pub))
    for s in services:
        if s.name != "keygen":  # stopped by SIGTERM: a graceful exit, not a crash
            assert s.exited() in (0, -signal.SIGTERM), s.tail()
