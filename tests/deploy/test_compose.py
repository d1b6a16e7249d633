"""docker-compose.yml and mosquitto/compose.conf: what can be checked without a Docker engine."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

import pytest

from .conftest import COMPOSE_FILE, REPO, load_compose, read_toml

LEPTON_SERVICES = ("bridge", "worker", "agent-1", "agent-2", "console")
AGENTS = ("agent-1", "agent-2")


def directives(conf: Path) -> list[str]:
    return [ln.strip() for ln in conf.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def compose_cli() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    pytest.skip("neither docker-compose nor the docker compose plugin is installed "
                "(CI: apt-get install -y docker-compose)")


def mounts(svc: dict) -> dict[str, str]:
    """container path -> source (a named volume, or a ./ path) for short-syntax volumes."""
    out = {}
    for v in svc.get("volumes", []):
        src, dst, *_ = v.split(":")
        out[dst] = src
    return out


def volume_of(svc: dict, path: str) -> tuple[str, str] | None:
    """(source, mount point) of the mount holding container path `path`, deepest first."""
    for dst, src in sorted(mounts(svc).items(), key=lambda kv: -len(kv[0])):
        if PurePosixPath(path).is_relative_to(dst):
            return src, dst
    return None


# ---- the compose tool itself ---------------------------------------------------------------

def test_docker_compose_config_accepts_the_file() -> None:
    cli = compose_cli()

    res = subprocess.run([*cli, "-f", str(COMPOSE_FILE), "config", "-q"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)

    assert res.returncode == 0, res.stderr


def test_docker_compose_config_rejects_a_broken_dependency(tmp_path: Path) -> None:
    # Shows the check above has teeth: an unknown depends_on condition must be refused.
    cli = compose_cli()
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE_FILE.read_text().replace("condition: service_healthy", "condition: service_happy", 1))

    res = subprocess.run([*cli, "-f", str(broken), "--project-directory", str(REPO), "config", "-q"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)

    assert res.returncode != 0


# ---- structure ------------------------------------------------------------------------------

def test_stack_has_broker_bridge_worker_and_two_agents() -> None:
    services = load_compose()["services"]

    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    assert set(LEPTON_SERVICES) <= set(services)
    assert {services[a]["environment"]["LEPTON_DEVICE"] for a in AGENTS} == {"cam-1", "cam-2"}


@pytest.mark.parametrize("name", ("mosquitto", *LEPTON_SERVICES))
def test_long_running_services_have_healthcheck_and_restart_policy(name: str) -> None:
    svc = load_compose()["services"][name]

    assert svc["restart"] in ("always", "unless-stopped")
    assert svc["healthcheck"]["test"][0] == "CMD"
    assert {"interval", "timeout", "retries", "start_period"} <= set(svc["healthcheck"])


def test_keygen_is_a_one_shot_the_worker_and_agents_wait_for() -> None:
    services = load_compose()["services"]

    assert services["keygen"]["restart"] == "no"
    for name in ("worker", *AGENTS):
        assert services[name]["depends_on"]["keygen"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("name", LEPTON_SERVICES)
def test_services_start_only_after_the_broker_is_healthy(name: str) -> None:
    svc = load_compose()["services"][name]

    assert svc["depends_on"]["mosquitto"]["condition"] == "service_healthy"


def test_agents_wait_for_a_healthy_bridge_and_a_started_worker() -> None:
    services = load_compose()["services"]

    for a in AGENTS:
        assert services[a]["depends_on"]["bridge"]["condition"] == "service_healthy"
        assert services[a]["depends_on"]["worker"]["condition"] == "service_started"


def test_commands_match_the_cli_surface() -> None:
    services = load_compose()["services"]
    scripts = read_toml(REPO / "pyproject.toml")["project"]["scripts"]

    assert services["bridge"]["command"] == ["lepton-bridge", "--config", "/etc/lepton/bridge.toml"]
    for a in AGENTS:
        assert services[a]["command"] == ["lepton-agent", "--config", "/etc/lepton/agent.toml"]
    worker = services["worker"]["command"]
    assert worker[:2] == ["sh", "-c"]
    task = r"\$\{LEPTON_TASK:-digits\}"  # compose interpolates it: any task, digits by default
    assert re.fullmatch(rf"lepton-worker bootstrap --task {task} --config (\S+) && exec lepton-worker run --task {task} "
                        r"--config \1", worker[2])
    for exe in ("lepton-bridge", "lepton-agent", "lepton-worker"):
        assert exe in scripts


@pytest.mark.parametrize("name", LEPTON_SERVICES)
def test_services_reach_the_broker_by_its_compose_name(name: str) -> None:
    env = load_compose()["services"][name]["environment"]

    assert env["LEPTON_MQTT__HOST"] == "mosquitto"
    assert env["LEPTON_MQTT__PORT"] == "1883"


def test_bind_mounted_files_exist() -> None:
    services = load_compose()["services"]

    sources = [src for svc in services.values() for src in mounts(svc).values() if src.startswith("./")]

    assert sources
    for src in sources:
        assert (REPO / src).is_file(), src


def test_registry_and_private_key_live_in_a_named_volume_agents_never_mount() -> None:
    doc = load_compose()
    services = doc["services"]
    worker_cfg = read_toml(REPO / "docker/config/worker.toml")

    registry = volume_of(services["worker"], worker_cfg["registry"])
    key = volume_of(services["worker"], worker_cfg["signing_key"])
    keygen_priv = volume_of(services["keygen"], services["keygen"]["command"][3])

    assert registry is not None and registry[0] in doc["volumes"]
    assert key == registry == keygen_priv
    for a in AGENTS:
        assert registry[0] not in mounts(services[a]).values()


def test_agents_get_the_public_key_read_only_from_keygen() -> None:
    doc = load_compose()
    services = doc["services"]
    agent_cfg = read_toml(REPO / "docker/config/agent.toml")
    keygen_pub = volume_of(services["keygen"], services["keygen"]["command"][5])

    for a in AGENTS:
        src, dst = volume_of(services[a], agent_cfg["model"]["public_key"])
        assert src in doc["volumes"] and (src, dst) == keygen_pub
        assert f"{src}:{dst}:ro" in services[a]["volumes"]


def test_lepton_services_run_the_images_built_from_the_role_dockerfiles() -> None:
    services = load_compose()["services"]
    want = {"bridge": "Dockerfile.bridge", "worker": "Dockerfile.worker", "agent-1": "Dockerfile.agent",
            "agent-2": "Dockerfile.agent", "keygen": "Dockerfile.bridge", "console": "Dockerfile.bridge"}

    for name, dockerfile in want.items():
        build = services[name]["build"]
        assert build["context"] == "."
        assert build["dockerfile"] == f"docker/{dockerfile}"
        assert (REPO / build["dockerfile"]).is_file()


# ---- the broker -------------------------------------------------------------------------------

def test_compose_conf_equals_mosquitto_conf_except_the_listener() -> None:
    dev, comp = directives(REPO / "mosquitto/mosquitto.conf"), directives(REPO / "mosquitto/compose.conf")

    dev_listeners = [d for d in dev if d.startswith("listener ")]
    comp_listeners = [d for d in comp if d.startswith("listener ")]

    assert dev_listeners == ["listener 1883 127.0.0.1"]
    assert comp_listeners == ["listener 1883 0.0.0.0"]
    assert [d for d in dev if not d.startswith("listener ")] == [d for d in comp if not d.startswith("listener ")]


def test_broker_mounts_compose_conf_and_persists_to_a_named_volume() -> None:
    doc = load_compose()
    svc = doc["services"]["mosquitto"]
    persist = next(d.split()[1] for d in directives(REPO / "mosquitto/compose.conf")
                   if d.startswith("persistence_location"))

    assert mounts(svc)["/mosquitto/config/mosquitto.conf"] == "./mosquitto/compose.conf"
    assert "/mosquitto/config/mosquitto.conf:ro" in " ".join(svc["volumes"])
    src, _ = volume_of(svc, persist)
    assert src in doc["volumes"]
    assert "-c /mosquitto/config/mosquitto.conf" in " ".join(svc["command"])


def test_broker_port_is_published_on_loopback_only() -> None:
    ports = load_compose()["services"]["mosquitto"]["ports"]

    assert ports and all(p.startswith("127.0.0.1:") for p in ports)


def test_broker_healthcheck_escapes_the_dollar_for_compose() -> None:
    # Compose interpolates $VAR; $$ is how a literal $SYS topic reaches mosquitto_sub.
    test = load_compose()["services"]["mosquitto"]["healthcheck"]["test"]

    assert "$$SYS/broker/version" in test


# ---- the mounted configs against the services' own config models ----------------------------

@pytest.mark.parametrize(("service", "module", "model"), [
    ("agent-1", "edge_agent.config", "AgentConfig"),
    ("agent-2", "edge_agent.config", "AgentConfig"),
    ("bridge", "hub_bridge.config", "BridgeConfig"),
    ("worker", "cloud_worker.config", "WorkerConfig"),
    ("console", "lepton_console.config", "ConsoleConfig"),
])
def test_mounted_config_plus_compose_env_is_valid(service: str, module: str, model: str) -> None:
    config_model = getattr(pytest.importorskip(module, reason=f"{module} is not written yet"), model)
    from shared.process.config import load_config

    svc = load_compose()["services"][service]
    src = next(v.split(":")[0] for v in svc["volumes"] if v.startswith("./docker/config/"))
    # Compose interpolates ${VAR:-default} from the host's environment: here, the defaults.
    env = {k: re.sub(r"\$\{\w+:-([^}]*)\}", r"\1", str(v)) for k, v in svc["environment"].items()}

    cfg = load_config(config_model, REPO / src, environ=env)

    assert (cfg.mqtt.host, cfg.mqtt.port) == ("mosquitto", 1883)
    if service.startswith("agent-"):
        assert cfg.device == env["LEPTON_DEVICE"]
        assert cfg.source.type == "replay" and cfg.task == "digits"


def test_the_console_is_published_on_loopback_and_never_mounts_the_registry() -> None:
    doc = load_compose()
    console = doc["services"]["console"]
    assert console["ports"] == ["127.0.0.1:${LEPTON_CONSOLE_PORT:-8765}:8765"]
    assert console["command"] == ["lepton", "console", "--config", "/etc/lepton/console.toml"]
    assert all(not v.startswith("lepton-registry") for v in console.get("volumes", []))
    assert "console" in console["build"]["args"]["EXTRAS"]
