"""Helpers for the deployment tests: repo paths, the compose file, the docker/ scripts."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"
DOCKER_DIR = REPO / "docker"
DEPLOY_DIR = REPO / "edge_agent" / "deploy"
DOCKERFILES = sorted(DOCKER_DIR.glob("Dockerfile.*"))


def load_compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml: pip install pyyaml")
    return yaml.safe_load(COMPOSE_FILE.read_text())


def read_toml(path: Path) -> dict[str, Any]:
    return tomllib.loads(path.read_text())


def load_script(name: str) -> ModuleType:
    """Import docker/<name>.py (the images copy these files; they are not a package)."""
    spec = importlib.util.spec_from_file_location(f"lepton_docker_{name}", DOCKER_DIR / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # pydantic resolves the script's annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


def require_tool(name: str, install: str) -> str:
    path = shutil.which(name) or (str(REPO / ".venv" / "bin" / name) if (REPO / ".venv" / "bin" / name).exists()
                                  else None)
    if path is None:
        pytest.skip(f"{name} is not installed ({install})")
    return path


# ---- container tests (podman; RUN_CONTAINER_TESTS=1, see tests/deploy/podman.py) --------------

@pytest.fixture(scope="session")
def podman_ready() -> None:
    from . import podman

    reason = podman.why_not()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def lepton_images(podman_ready: None) -> dict[str, str]:
    """The three images and the broker image, built by scripts/images.sh when missing."""
    from . import podman

    podman.build_images()
    return {**podman.IMAGES, "mosquitto": podman.BROKER_IMAGE}


@pytest.fixture(scope="session")
def podman_api(podman_ready: None) -> Iterator[str]:
    """DOCKER_HOST for docker-compose and testcontainers: podman's docker-compatible socket."""
    from . import podman

    svc = podman.ApiService()
    yield svc.url
    svc.stop()
