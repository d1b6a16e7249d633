"""The documented `bash scripts/compose.sh up` for real: the repo's docker-compose.yml, the images
scripts/images.sh built, run by Debian's docker-compose (1.29) against podman's docker-compatible
socket, the script running the health checks podman does not schedule here.

One stack per module (it takes a minute or two to come up on 2 cores); the tests run in file
order against it and the last one takes it down. Needs RUN_CONTAINER_TESTS=1 and podman
(see tests/deploy/podman.py); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from shared.protocol.schemas import Manifest, ModelState, ServiceStatus, Status, loads
from shared.protocol.topics import Topics
from shared.transport.broker import free_port

from . import podman
from .conftest import COMPOSE_FILE, REPO, load_compose

pytestmark = pytest.mark.slow

SERVICES = ("mosquitto", "bridge", "console", "worker", "agent-1", "agent-2")
AGENTS = {"agent-1": "cam-1", "agent-2": "cam-2"}
UP_DEADLINE_S = 420.0  # liveness only: worker bootstrap trains v1 on 2 shared cores
T = Topics()


@dataclass
class Stack:
    project: str
    port: int
    env: dict[str, str]
    checks: podman.HealthChecks
    up_seconds: float = 0.0
    down: subprocess.CompletedProcess[str] | None = None
    log: list[str] = field(default_factory=list)

    def script(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """scripts/compose.sh, as the docs have a user run it (this project, port and podman socket)."""
        env = {**self.env, "LEPTON_ENGINE": "podman", "LEPTON_COMPOSE_PROJECT": self.project,
               "LEPTON_COMPOSE_TIMEOUT": str(int(UP_DEADLINE_S))}
        return subprocess.run(["bash", str(REPO / "scripts" / "compose.sh"), *args], capture_output=True, text=True,
                              timeout=timeout, env=env, cwd=REPO)

    def compose(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["docker-compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args],
                              capture_output=True, text=True, timeout=timeout, env=self.env, cwd=REPO)

    def by_service(self) -> dict[str, dict]:
        return {c["Labels"]["com.docker.compose.service"]: c
                for c in podman.containers(f"com.docker.compose.project={self.project}")}

    def health(self) -> dict[str, str]:
        return {svc: podman.health(c["Id"]) for svc, c in self.by_service().items() if svc != "keygen"}

    def wait_healthy(self, deadline_s: float) -> dict[str, str]:
        end = time.monotonic() + deadline_s
        while True:
            h = self.health()
            if set(h) >= set(SERVICES) and all(v == "healthy" for v in h.values()):
                return h
            if time.monotonic() > end:
                return h
            time.sleep(2)

    def exec(self, service: str, *cmd: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return podman.podman("exec", self.by_service()[service]["Id"], *cmd, timeout=timeout, check=False)

    def diagnostics(self) -> str:
        res = self.compose("logs", "--no-color", "--tail", "40", timeout=120)
        return f"health: {self.health()}\n{res.stdout[-8000:]}"


@pytest.fixture(scope="module")
def stack(lepton_images: dict[str, str], podman_api: str) -> Iterator[Stack]:
    if shutil.which("docker-compose") is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    project = f"leptonci{uuid.uuid4().hex[:8]}"
    port = free_port()
    env = podman.env(DOCKER_HOST=podman_api, LEPTON_BROKER_PORT=str(port), COMPOSE_HTTP_TIMEOUT="300")
    checks = podman.HealthChecks(f"com.docker.compose.project={project}", interval=3.0)
    s = Stack(project, port, env, checks)
    checks.start()
    t0 = time.monotonic()
    try:
        up = s.script("up", "--no-build", timeout=UP_DEADLINE_S + 60)
        assert up.returncode == 0 and "compose: all services up in" in up.stdout, up.stdout[-4000:] + up.stderr[-4000:]
        h = s.wait_healthy(UP_DEADLINE_S - (time.monotonic() - t0))
        s.up_seconds = time.monotonic() - t0
        assert all(v == "healthy" for v in h.values()) and set(h) >= set(SERVICES), s.diagnostics()
        (podman.BUILD / "compose").mkdir(parents=True, exist_ok=True)
        (podman.BUILD / "compose" / "up.json").write_text(json.dumps({"up_seconds": round(s.up_seconds, 1)}))
        yield s
    finally:
        if s.down is None:
            s.script("down", "-v", "--remove-orphans", timeout=180)
        checks.stop()


def mqtt_client(port: int, client_id: str, clean: bool = True) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    props = Properties(PacketTypes.CONNECT)
    props.SessionExpiryInterval = 0 if clean else 3600
    c.connect("127.0.0.1", port, keepalive=30, clean_start=clean, properties=props)
    return c


def retained(port: int, topic_filter: str | list[str], want: int, timeout: float = 20.0) -> dict[str, bytes]:
    got: dict[str, bytes] = {}
    done = threading.Event()

    def on_message(_c, _u, msg) -> None:
        got[msg.topic] = msg.payload
        if len(got) >= want:
            done.set()

    c = mqtt_client(port, f"t-{uuid.uuid4().hex[:8]}")
    c.on_message = on_message
    for f in [topic_filter] if isinstance(topic_filter, str) else topic_filter:
        c.subscribe(f, qos=1)
    c.loop_start()
    done.wait(timeout)
    c.loop_stop()
    c.disconnect()
    return got


# ---- in file order, against one stack -------------------------------------------------------------

def test_every_service_comes_up_healthy_and_keygen_exits_0(stack: Stack) -> None:
    svcs = stack.by_service()

    assert set(svcs) == {*SERVICES, "keygen"}
    assert svcs["keygen"]["State"] == "exited" and svcs["keygen"]["ExitCode"] == 0
    assert stack.health() == {s: "healthy" for s in SERVICES}
    assert stack.checks.runs > 0  # the checks ran (and judged): healthy is their verdict
    print(f"stack healthy {stack.up_seconds:.0f} s after `bash scripts/compose.sh up`")


def test_services_run_as_the_lepton_user_from_the_built_images(stack: Stack) -> None:
    svcs = stack.by_service()

    for svc in ("bridge", "worker", *AGENTS):
        assert stack.exec(svc, "id", "-u").stdout.strip() == "10001", svc
        assert svcs[svc]["Image"].endswith(load_compose()["services"][svc]["image"]), svcs[svc]["Image"]


def test_mosquitto_sub_on_the_host_reads_the_tree(stack: Stack) -> None:
    sub = shutil.which("mosquitto_sub")
    if sub is None:
        pytest.skip("mosquitto_sub is not installed (apt-get install mosquitto-clients)")

    res = subprocess.run([sub, "-h", "127.0.0.1", "-p", str(stack.port), "-v", "-t", "lepton/v1/#", "-W", "4"],
                         capture_output=True, timeout=30)  # -W 4: exits 27 after 4 s of reading

    # Model artifacts and feature batches are binary: only the topic names are read.
    topics = {line.split(b" ", 1)[0].decode("utf-8", "replace") for line in res.stdout.splitlines()}
    for want in (T.hub_status(), T.status("cam-1"), T.status("cam-2"), T.manifest("digits"),
                 T.model_state("cam-1"), T.model_state("cam-2")):
        assert str(want) in topics, sorted(topics)[:40]
    assert loads(retained(stack.port, str(T.hub_status()), 1)[str(T.hub_status())], ServiceStatus).state == "online"
    for dev in AGENTS.values():
        assert loads(retained(stack.port, str(T.status(dev)), 1)[str(T.status(dev))], Status).state == "online"


def test_a_new_model_version_reaches_every_agent(stack: Stack) -> None:
    before = loads(retained(stack.port, str(T.manifest("digits")), 1)[str(T.manifest("digits"))], Manifest).version

    res = stack.exec("worker", "lepton-worker", "models", "promote", "--task", "digits", "--version", str(before),
                     "--config", "/etc/lepton/worker.toml", timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr

    new = loads(retained(stack.port, str(T.manifest("digits")), 1)[str(T.manifest("digits"))], Manifest).version
    assert new == before + 1
    end = time.monotonic() + 120
    states: dict[str, ModelState] = {}
    while time.monotonic() < end:
        got = retained(stack.port, [str(T.model_state(d)) for d in AGENTS.values()], len(AGENTS), timeout=5)
        states = {loads(p, ModelState).device: loads(p, ModelState) for p in got.values()}
        if all(states.get(d) and states[d].version == new and states[d].state == "loaded" for d in AGENTS.values()):
            break
        time.sleep(2)
    assert {d: (s.state, s.version) for d, s in states.items()} == {d: ("loaded", new) for d in AGENTS.values()}, \
        stack.diagnostics()


def test_a_broker_restart_loses_no_qos1_message(stack: Stack) -> None:
    topic = str(Topics(f"lepton/v1/t{uuid.uuid4().hex[:8]}").status("durable"))  # a root nobody else reads
    cid = f"durable-{uuid.uuid4().hex[:8]}"
    sub = mqtt_client(stack.port, cid, clean=False)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    time.sleep(1)
    sub.loop_stop()
    sub.disconnect()  # session (and subscription) stay on the broker: expiry 1 h
    pub = mqtt_client(stack.port, f"pub-{uuid.uuid4().hex[:8]}")
    pub.loop_start()
    sent = [f"m{i}".encode() for i in range(50)]
    for m in sent:
        pub.publish(topic, m, qos=1).wait_for_publish(10)
    pub.loop_stop()
    pub.disconnect()

    res = stack.compose("restart", "mosquitto", timeout=120)
    assert res.returncode == 0, res.stderr

    got: list[bytes] = []
    done = threading.Event()

    def on_message(_c, _u, msg) -> None:
        got.append(msg.payload)
        if len(got) >= len(sent):
            done.set()

    end = time.monotonic() + 60
    while True:  # the published port answers again once mosquitto is back
        try:
            again = mqtt_client(stack.port, cid, clean=False)
            break
        except OSError:
            assert time.monotonic() < end, "broker did not come back"
            time.sleep(1)
    again.on_message = on_message
    again.loop_start()
    done.wait(30)
    again.loop_stop()
    again.disconnect()
    vol = podman.podman("volume", "inspect", f"{stack.project}_mosquitto-data").stdout

    assert got == sent
    assert json.loads(vol)[0]["Name"] == f"{stack.project}_mosquitto-data"
    # The services reconnect on their own: everything turns green again.
    h = stack.wait_healthy(120)
    assert h == {s: "healthy" for s in SERVICES}, stack.diagnostics()


def test_down_is_clean(stack: Stack) -> None:
    stack.down = stack.script("down", "-v", "--remove-orphans", timeout=180)
    label = f"com.docker.compose.project={stack.project}"

    assert stack.down.returncode == 0, stack.down.stderr
    assert podman.containers(label) == []
    assert podman.podman("volume", "ls", "-q", "--filter", f"label={label}").stdout.strip() == ""
    assert stack.project not in podman.podman("network", "ls", "--format", "{{.Name}}").stdout
