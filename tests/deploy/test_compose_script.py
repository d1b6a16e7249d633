"""scripts/compose.sh: the documented way to run docker-compose.yml, with whatever engine is there.

Engine detection and messages run against stand-ins for docker, docker-compose and podman on PATH
(tests/deploy/fake_engine.py; this machine may have none of them, and no Docker daemon answers in
CI); the real thing runs a small stack under podman and docker-compose (health checks, depends_on,
down -v) with the container tests (RUN_CONTAINER_TESTS=1, scripts/test-deploy.sh), which also
bring up the real stack with it (tests/deploy/test_compose_up.py).
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from .conftest import REPO

SCRIPT = REPO / "scripts" / "compose.sh"
FAKE = Path(__file__).with_name("fake_engine.py")
HIDDEN = {"docker", "docker-compose", "podman", "podman-compose"}


@pytest.fixture(scope="module")
def system_bin(tmp_path_factory) -> Path:
    """Every program of /usr/bin and /bin except the container engines: a PATH without them."""
    d = tmp_path_factory.mktemp("sysbin")
    for src in (Path("/usr/bin"), Path("/bin"), Path("/usr/sbin"), Path("/sbin")):
        if not src.is_dir():
            continue
        for p in src.iterdir():
            if p.name not in HIDDEN and not (d / p.name).exists():
                (d / p.name).symlink_to(p)
    return d


class Fakes:
    def __init__(self, tmp: Path, system_bin: Path, engines: tuple[str, ...]) -> None:
        self.bin = tmp / "fakebin"
        self.bin.mkdir()
        self.state, self.log = tmp / "state.json", tmp / "calls.log"
        for name in engines:
            exe = self.bin / name
            exe.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
        self.path = f"{self.bin}:{system_bin}"

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        e = {k: v for k, v in os.environ.items() if not k.startswith(("LEPTON_", "DOCKER_", "CONTAINERS_"))}
        e.update(PATH=self.path, FAKE_STATE=str(self.state), FAKE_LOG=str(self.log), **env)
        return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout, env=e,
                              cwd=REPO)

    def calls(self) -> list[tuple[str, list[str], str | None]]:
        if not self.log.exists():
            return []
        return [tuple(json.loads(line)) for line in self.log.read_text().splitlines()]  # type: ignore[misc]


@pytest.fixture
def fakes(tmp_path, system_bin):
    return lambda *engines: Fakes(tmp_path, system_bin, engines)


# ---- no engine, or not a usable one: one clear message, exit 69 --------------------------------
def test_no_engine_at_all_says_what_to_install(fakes):
    r = fakes().run("up", timeout=30)
    assert r.returncode == 69, r.stderr
    assert "no container engine to run docker-compose.yml with" in r.stderr
    assert "docker is not installed" in r.stderr and "podman is not installed" in r.stderr
    assert "apt-get install -y --no-install-recommends podman runc netavark aardvark-dns catatonit docker-compose" \
        in r.stderr and "prefix sudo unless you are root" in r.stderr


def test_a_docker_cli_without_daemon_or_compose_plugin_is_named_not_a_bare_rc_125(fakes):
    # The machine: `docker compose up -d` -> "unknown shorthand flag: 'd' in -d", rc 125
    f = fakes("docker")
    r = f.run("up", timeout=30, FAKE_DOCKER="none")
    assert r.returncode == 69 and "docker is installed but its daemon does not answer" in r.stderr
    assert "unknown shorthand flag" not in r.stderr


def test_a_docker_daemon_without_any_compose_is_named(fakes):
    r = fakes("docker").run("up", timeout=30, FAKE_DOCKER="no-plugin")
    assert r.returncode == 69 and "docker has no compose plugin" in r.stderr
    assert "docker-compose is not installed" in r.stderr


def test_podman_without_docker_compose_is_named(fakes):
    r = fakes("podman").run("up", timeout=30)
    assert r.returncode == 69 and "podman is installed but docker-compose, which drives it here, is not" in r.stderr


def test_a_wrong_engine_choice_or_timeout_is_a_usage_error(fakes):
    f = fakes("docker")
    assert f.run("up", LEPTON_ENGINE="dokcer").returncode == 2
    assert f.run("up", LEPTON_COMPOSE_TIMEOUT="soon").returncode == 2
    assert "usage: bash scripts/compose.sh up" in f.run().stderr


# ---- Docker ------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode,compose", [("plugin", ["docker", "compose"]), ("no-plugin", ["docker-compose"])])
def test_docker_with_its_plugin_or_docker_compose_brings_the_stack_up(fakes, mode, compose):
    f = fakes("docker", "docker-compose")
    r = f.run("up", FAKE_DOCKER=mode)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"compose: engine: {' '.join(compose)} (docker), project lepton" in r.stdout
    assert "compose: all services up in" in r.stdout and "mosquitto keygen bridge worker agent-1 agent-2" in r.stdout
    ups = [c for c in f.calls() if "up" in c[1]]
    assert [c[0] for c in ups] == [compose[0]]
    assert ups[0][1][-5:] == ["docker-compose.yml", "-p", "lepton", "up", "-d"]
    assert not [c for c in f.calls() if c[0] == "podman"]


def test_missing_images_are_named_with_the_command_that_builds_them(fakes):
    r = fakes("docker").run("up", FAKE_DOCKER="plugin", FAKE_MISSING_IMAGES="lepton/worker:local")
    assert r.returncode == 1
    assert "no image lepton/worker:local in docker: build them first with `bash scripts/images.sh`" in r.stderr


# ---- podman ------------------------------------------------------------------------------------
def test_under_podman_it_runs_the_health_checks_and_its_own_api_socket(fakes):
    f = fakes("podman", "docker-compose")
    r = f.run("up")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "compose: engine: docker-compose (podman)" in r.stdout
    assert "running them here every 3 s while waiting" in r.stdout
    assert "compose: all services up in" in r.stdout
    calls = f.calls()
    assert any(c[0] == "podman" and c[1][:2] == ["healthcheck", "run"] for c in calls)
    host = next(c[2] for c in calls if c[0] == "docker-compose" and "up" in c[1])
    assert host.startswith("unix:///tmp/lepton-compose-")
    assert not Path(host.removeprefix("unix://")).parent.exists()  # the socket's directory is gone after


def test_a_service_that_never_becomes_healthy_ends_the_wait_with_what_and_how_long(fakes):
    f = fakes("podman", "docker-compose")
    r = f.run("up", timeout=90, FAKE_NEVER_HEALTHY="worker", LEPTON_COMPOSE_TIMEOUT="12")
    assert r.returncode == 1
    assert "not every service came up within 12 s (LEPTON_COMPOSE_TIMEOUT)" in r.stderr
    still = next(ln for ln in r.stdout.splitlines() if "still waiting after" in ln)
    assert "running, health starting: " in still and "worker" in still and "trains and signs model v1" in still, still
    assert "s: up: " in r.stdout  # the progress lines: what is up, what it waits for


@pytest.mark.parametrize("args,says", [(["down"], "the volumes stay (down -v removes them too)"),
                                       (["down", "-v"], "and the volumes (signing key, model registry")])
def test_down_says_what_it_keeps(fakes, args, says):
    f = fakes("podman", "docker-compose")
    r = f.run(*args)
    assert r.returncode == 0 and says in r.stdout
    down = [c for c in f.calls() if c[0] == "docker-compose"][-1]
    assert down[1][-len(args):] == args


# ---- the real thing: podman and docker-compose ---------------------------------------------------
def _why_no_podman() -> str | None:
    from . import podman

    why = podman.why_not()  # RUN_CONTAINER_TESTS=1 (scripts/test-deploy.sh), root, a podman that runs
    if why is None and shutil.which("docker-compose") is None:
        return "docker-compose is not installed (Debian: apt-get install docker-compose)"
    return why


@pytest.fixture(scope="module")
def mini_image(tmp_path_factory) -> str:
    """An image of a few host binaries (sh, cat, sleep, echo and libc), imported: no registry needed."""
    why = _why_no_podman()
    if why:
        pytest.skip(why)
    root = tmp_path_factory.mktemp("rootfs")
    for d in ("bin", "tmp"):
        (root / d).mkdir()
    (root / "tmp").chmod(0o1777)
    libs: set[str] = set()
    for prog in ("sh", "cat", "sleep", "echo"):
        src = shutil.which(prog, path="/bin:/usr/bin")
        assert src
        shutil.copy(src, root / "bin" / prog)
        out = subprocess.run(["ldd", src], capture_output=True, text=True).stdout
        libs |= {w for w in out.split() if w.startswith("/")}
    for lib in libs:
        dst = root / lib.lstrip("/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(lib, dst)
    tag = f"localhost/lepton-compose-test:{uuid.uuid4().hex[:6]}"
    tar = root.parent / "rootfs.tar"
    subprocess.run(["tar", "-C", str(root), "-cf", str(tar), "."], check=True)
    env = {**os.environ, "CONTAINERS_CONF": str(REPO / "docker" / "podman" / "containers.conf")}
    imp = subprocess.run(["podman", "import", str(tar), tag], capture_output=True, text=True, env=env, timeout=120)
    if imp.returncode != 0:
        pytest.skip(f"podman cannot import an image here: {imp.stderr.strip()[-300:]}")
    run = subprocess.run(["podman", "run", "--rm", tag, "/bin/echo", "ok"], capture_output=True, text=True, env=env,
                         timeout=120)
    if run.returncode != 0:
        subprocess.run(["podman", "rmi", tag], capture_output=True, env=env, timeout=60)
        pytest.skip(f"podman cannot run a container here: {run.stderr.strip()[-300:]}")
    yield tag
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, env=env, timeout=60)


def _mini_compose(tmp: Path, image: str, app_healthy: bool = True) -> Path:
    ready = "/bin/echo ok > /tmp/ready; " if app_healthy else ""
    f = tmp / "mini.yml"
    f.write_text(f"""services:
  broker:
    image: {image}
    command: ["/bin/sh", "-c", "/bin/sleep 2; /bin/echo ok > /tmp/ready; exec /bin/sleep 600"]
    stop_grace_period: 1s         # sleep ignores SIGTERM
    healthcheck: {{test: ["CMD", "/bin/cat", "/tmp/ready"], interval: 2s, timeout: 2s, retries: 3}}
  keygen:
    image: {image}
    restart: "no"
    command: ["/bin/echo", "a key pair"]
  app:
    image: {image}
    command: ["/bin/sh", "-c", "{ready}exec /bin/sleep 600"]
    stop_grace_period: 1s
    healthcheck: {{test: ["CMD", "/bin/cat", "/tmp/ready"], interval: 2s, timeout: 2s, retries: 3}}
    depends_on:
      broker: {{condition: service_healthy}}
      keygen: {{condition: service_completed_successfully}}
volumes:
  data:
""")
    return f


def _real(compose_file: Path, project: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("LEPTON_", "DOCKER_"))}
    e.update(LEPTON_ENGINE="podman", LEPTON_COMPOSE_FILE=str(compose_file), LEPTON_COMPOSE_PROJECT=project, **env)
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=180, env=e, cwd=REPO)


@pytest.mark.slow
def test_a_real_stack_under_podman_comes_up_healthy_and_goes_down(mini_image, tmp_path):
    f, project = _mini_compose(tmp_path, mini_image), f"leptontest{uuid.uuid4().hex[:6]}"
    try:
        up = _real(f, project, "up")
        ps = _real(f, project, "ps")
    finally:
        down = _real(f, project, "down", "-v")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "compose: all services up in" in up.stdout and "broker keygen app" in up.stdout
    assert ps.returncode == 0 and ps.stdout.count("(healthy)") == 2 and "Exit 0" in ps.stdout, ps.stdout
    assert down.returncode == 0 and "the volumes (signing key" in down.stdout
    left = subprocess.run(["podman", "ps", "-aq", "--filter", f"label=com.docker.compose.project={project}"],
                          capture_output=True, text=True, timeout=60)
    assert left.stdout.strip() == ""


@pytest.mark.slow
def test_a_real_service_that_never_gets_healthy_is_named_at_the_deadline(mini_image, tmp_path):
    f, project = _mini_compose(tmp_path, mini_image, app_healthy=False), f"leptontest{uuid.uuid4().hex[:6]}"
    try:
        up = _real(f, project, "up", LEPTON_COMPOSE_TIMEOUT="12")
    finally:
        _real(f, project, "down", "-v")
    assert up.returncode == 1
    assert "not every service came up within 12 s" in up.stderr
    assert "app" in next(ln for ln in up.stdout.splitlines() if "still waiting after" in ln)


def test_shellcheck_is_clean():
    from .conftest import require_tool

    shellcheck = require_tool("shellcheck", "CI: apt-get install -y shellcheck")
    res = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout
