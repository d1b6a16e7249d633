"""Podman for the container tests: the project's containers.conf, the docker-compatible API
socket that docker-compose and testcontainers talk to, and the health-check runs that
systemd's timers would do on a host where systemd is PID 1.

Container tests build images (minutes), so they run when RUN_CONTAINER_TESTS=1
(`scripts/test-deploy.sh`, which `.ci/run` calls); otherwise they skip and say so.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from .conftest import REPO

CONTAINERS_CONF = REPO / "docker" / "podman" / "containers.conf"
BUILD = Path(os.environ.get("LEPTON_BUILD_DIR", REPO / "build"))
IMAGES = {"agent": "lepton/agent:local", "bridge": "lepton/bridge:local", "worker": "lepton/worker:local"}
BROKER_IMAGE = "docker.io/library/eclipse-mosquitto:2"
OPT_IN = "RUN_CONTAINER_TESTS"


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF)), **extra}


def podman(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, env=env())
    if check and res.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} -> {res.returncode}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return res


def why_not() -> str | None:
    """None when container tests can run here, else the reason they skip."""
    if os.environ.get(OPT_IN) != "1":
        return (f"container tests build images (minutes): set {OPT_IN}=1 or run scripts/test-deploy.sh "
                "(.ci/run does)")
    if shutil.which("podman") is None:
        return "podman is not installed (Debian: apt-get install podman runc; .ci/run installs it)"
    if os.geteuid() != 0:
        return "the container tests run podman as root (rootless podman needs subuid/subgid setup)"
    res = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", timeout=60, check=False)
    if res.returncode != 0:
        return f"podman cannot run here: {res.stderr.strip()[-500:]}"
    return None


def image_exists(name: str) -> bool:
    return podman("image", "exists", name, check=False).returncode == 0


def build_images() -> None:
    """scripts/images.sh, unless every image it makes is there already (scripts/test-deploy.sh
    builds them first, timed, so the tests measure the stack and not the build)."""
    if all(image_exists(i) for i in [*IMAGES.values(), BROKER_IMAGE]):
        return
    res = subprocess.run(["bash", str(REPO / "scripts" / "images.sh")], capture_output=True, text=True,
                         timeout=1800, env=env(LEPTON_ENGINE="podman"))
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-4000:]


class ApiService:
    """`podman system service` on a private unix socket: what DOCKER_HOST points at."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="lepton-podman-"))
        self.sock = self.dir / "podman.sock"
        self.url = f"unix://{self.sock}"
        self.log = open(self.dir / "service.log", "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(["podman", "system", "service", "--time=0", self.url], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env())
        deadline = time.monotonic() + 30
        while not self._answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"podman system service did not answer on {self.sock}: "
                                     f"{(self.dir / 'service.log').read_text()[-2000:]}")
            time.sleep(0.2)

    def _answers(self) -> bool:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(str(self.sock))
                s.sendall(b"GET /_ping HTTP/1.0\r\n\r\n")
                return b"OK" in s.recv(4096)
        except OSError:
            return False

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def containers(label: str) -> list[dict]:
    """`podman ps -a` as dicts, for containers carrying LABEL (key=value)."""
    out = podman("ps", "-a", "--filter", f"label={label}", "--format", "json", timeout=60).stdout
    return json.loads(out or "[]")


def health(container_id: str) -> str:
    """healthy | unhealthy | starting | '' (no health check)."""
    res = podman("inspect", "--format", "{{.State.Health.Status}}", container_id, check=False, timeout=60)
    return res.stdout.strip() if res.returncode == 0 else ""


class HealthChecks(threading.Thread):
    """Runs every health check of the labelled containers each `interval` seconds.

    Podman schedules health checks with systemd timers; where systemd is not PID 1 (CI's VM,
    most containers) nothing runs them and every service stays "starting". This thread is
    that timer: `podman healthcheck run` is the check the image declares, recorded where
    `docker-compose` and `podman inspect` read it.
    """

    def __init__(self, label: str, interval: float = 5.0) -> None:
        super().__init__(name=f"healthchecks-{label}", daemon=True)
        self.label, self.interval = label, interval
        self.stopping = threading.Event()
        self.runs = 0

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            try:
                for c in containers(self.label):
                    if c.get("State") == "running":
                        podman("healthcheck", "run", c["Id"], check=False, timeout=60)
                        self.runs += 1
            except (subprocess.TimeoutExpired, AssertionError, json.JSONDecodeError):
                continue  # the next round tries again; a stuck podman is the test's failure to report

    def stop(self) -> None:
        self.stopping.set()
        self.join(90)
