"""edge_agent/deploy: install-pi.sh (bash -n, shellcheck, dry and real runs into a temporary root)
and lepton-agent.service (systemd-analyze verify and security)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import DEPLOY_DIR, read_toml, require_tool

SCRIPT = DEPLOY_DIR / "install-pi.sh"
UNIT = DEPLOY_DIR / "lepton-agent.service"
BUNDLE_FILES = ("ca.crt", "client.crt", "client.key", "signing.pub")


def _installer_python() -> str | None:
    """What Raspberry Pi OS bookworm has: python3 >= 3.11 (tomllib) with venv support."""
    for cand in (shutil.which("python3"), sys.executable):
        if cand and subprocess.run([cand, "-c", "import tomllib, ensurepip, venv"], capture_output=True).returncode == 0:
            return cand
    return None


INSTALLER_PYTHON = _installer_python()


def run_install(*args: str, check: bool = True, systemd_running: Path | None = None) -> subprocess.CompletedProcess[str]:
    """systemd_running: a directory standing in for /run/systemd/system (systemd is init);
    by default a path that does not exist (a container or chroot, as CI is)."""
    if INSTALLER_PYTHON is None:
        pytest.skip("install-pi.sh needs python3 >= 3.11 with venv support (Debian: apt-get install -y python3-venv)")
    run_dir = str(systemd_running) if systemd_running else "/nonexistent/run/systemd/system"
    res = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHON": INSTALLER_PYTHON, "SYSTEMD_RUN_DIR": run_dir})
    if check:
        assert res.returncode == 0, res.stdout + res.stderr
    return res


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """The layout `lepton provision cam-7` emits: agent.toml + the files it names."""
    b = tmp_path / "cam-7"
    b.mkdir()
    (b / "agent.toml").write_text(
        'device = "cam-7"\ntask = "digits"\nstate_dir = "/var/lib/lepton"\n'
        '[source]\ntype = "camera"\n[model]\npublic_key = "signing.pub"\n'
        '[mqtt]\nhost = "hub.local"\nport = 8883\n'
        '[mqtt.tls]\nca = "./ca.crt"\ncert = "client.crt"\nkey = "/var/lib/elsewhere/other.key"\n')
    for name in BUNDLE_FILES:
        (b / name).write_text(f"{name} contents\n")
    return b


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    r.mkdir()
    return r


@pytest.fixture(scope="session")
def venv_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real `python3 -m venv` (the slow step of an install), copied into seeded roots."""
    if INSTALLER_PYTHON is None:
        pytest.skip("install-pi.sh needs python3 >= 3.11 with venv support (Debian: apt-get install -y python3-venv)")
    venv = tmp_path_factory.mktemp("venv-template") / "lepton"
    subprocess.run([INSTALLER_PYTHON, "-m", "venv", str(venv)], check=True, timeout=120)
    return venv


@pytest.fixture
def seeded_root(root: Path, venv_template: Path) -> Path:
    """A root whose /opt/lepton venv already exists, as on a device being upgraded."""
    shutil.copytree(venv_template, root / "opt/lepton", symlinks=True)
    return root


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and "opt/lepton" not in str(p)}


# ---- static checks -------------------------------------------------------------------------------

def test_script_parses() -> None:
    res = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)

    assert res.returncode == 0, res.stderr


def test_script_is_strict_and_executable() -> None:
    lines = SCRIPT.read_text().splitlines()

    assert lines[0] == "#!/usr/bin/env bash"
    assert "set -euo pipefail" in lines
    assert SCRIPT.stat().st_mode & stat.S_IXUSR


def test_shellcheck_is_clean() -> None:
    shellcheck = require_tool("shellcheck", "CI: apt-get install -y shellcheck")

    res = subprocess.run([shellcheck, "--severity=style", str(SCRIPT)], capture_output=True, text=True, timeout=60)

    assert res.returncode == 0, res.stdout


def unit_with_existing_exec(tmp_path: Path, extra: str = "") -> Path:
    # verify checks that ExecStart is executable; /opt/lepton does not exist on this machine.
    text = UNIT.read_text().replace("ExecStart=/opt/lepton/bin/lepton-agent", f"ExecStart={sys.executable}")
    assert text != UNIT.read_text()
    out = tmp_path / "lepton-agent.service"
    out.write_text(text + extra)
    return out


def verify(unit: Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("systemd-analyze", "part of systemd")
    return subprocess.run([tool, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    res = verify(unit_with_existing_exec(tmp_path))

    # verify exits 0 on unknown keys and only warns, so warnings about our file count too.
    assert res.returncode == 0, res.stderr
    assert "lepton-agent.service" not in res.stderr, res.stderr


def test_systemd_analyze_verify_flags_a_typo(tmp_path: Path) -> None:
    res = verify(unit_with_existing_exec(tmp_path, "\n[Service]\nRestartt=always\n"))

    assert "Unknown key 'Restartt'" in res.stderr


def test_unit_exposure_stays_ok(tmp_path: Path) -> None:
    tool = require_tool("systemd-analyze", "part of systemd")

    # threshold is exposure x 10: fail above 2.5 ("OK" range); the unit measures 1.7 (systemd 252).
    res = subprocess.run([tool, "security", "--offline=yes", "--threshold=25", str(UNIT)], capture_output=True,
                         text=True, timeout=60)

    assert res.returncode == 0, res.stdout[-2000:] + res.stderr


def test_unit_has_the_required_settings() -> None:
    settings = [ln.strip() for ln in UNIT.read_text().splitlines() if "=" in ln and not ln.startswith("#")]

    for want in ("Restart=always", "NoNewPrivileges=yes", "ProtectSystem=strict", "ReadWritePaths=/var/lib/lepton",
                 "PrivateTmp=yes", "DeviceAllow=char-video4linux rw", "DevicePolicy=closed", "User=lepton",
                 "ExecStart=/opt/lepton/bin/lepton-agent --config /etc/lepton/agent.toml",
                 "WantedBy=multi-user.target"):
        assert want in settings
    # The agent speaks sd_notify (shared/process/sdnotify.py): READY=1, then WATCHDOG=1 from its inference loop.
    for want in ("Type=notify", "NotifyAccess=main", "WatchdogSec=30"):
        assert want in settings


# ---- runs into a temporary root ----------------------------------------------------------------

def test_dry_run_lists_every_file_and_writes_nothing(bundle: Path, root: Path) -> None:
    res = run_install("--bundle", str(bundle), "--root", str(root), "--dry-run")

    for path, mode in [("etc/lepton/agent.toml", "0640"), ("etc/lepton/client.key", "0640"),
                       ("etc/lepton/ca.crt", "0644"), ("etc/lepton/client.crt", "0644"),
                       ("etc/lepton/signing.pub", "0644"), ("etc/systemd/system/lepton-agent.service", "0644")]:
        assert f"would write {root}/{path} (mode {mode}" in res.stdout
    assert f"would run: {INSTALLER_PYTHON} -m venv {root}/opt/lepton" in res.stdout
    assert "-m pip install --disable-pip-version-check --upgrade lepton-edge\\[edge\\]" in res.stdout
    assert f"would link {root}/etc/systemd/system/multi-user.target.wants/lepton-agent.service" in res.stdout
    assert list(root.iterdir()) == []


def test_install_into_root_writes_config_keys_and_enabled_unit(bundle: Path, root: Path) -> None:
    run_install("--bundle", str(bundle), "--root", str(root), "--skip-pip")

    etc = root / "etc/lepton"
    cfg = read_toml(etc / "agent.toml")
    assert cfg["model"]["public_key"] == "/etc/lepton/signing.pub"
    assert cfg["mqtt"]["tls"] == {"ca": "/etc/lepton/ca.crt", "cert": "/etc/lepton/client.crt",
                                  "key": "/var/lib/elsewhere/other.key"}  # not a bundle file: left alone
    for name in BUNDLE_FILES:
        assert (etc / name).read_bytes() == (bundle / name).read_bytes()
    assert stat.S_IMODE((etc / "client.key").stat().st_mode) == 0o640
    assert stat.S_IMODE((etc / "agent.toml").stat().st_mode) == 0o640
    assert stat.S_IMODE((etc / "ca.crt").stat().st_mode) == 0o644
    assert (root / "etc/systemd/system/lepton-agent.service").read_bytes() == UNIT.read_bytes()
    link = root / "etc/systemd/system/multi-user.target.wants/lepton-agent.service"
    assert os.readlink(link) == "/etc/systemd/system/lepton-agent.service"
    assert (root / "var/lib/lepton").is_dir()
    assert (root / "opt/lepton/bin/python").exists()


def test_rerun_is_idempotent_and_rolls_out_a_changed_bundle(bundle: Path, seeded_root: Path) -> None:
    run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")
    before = files_under(seeded_root)

    again = run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")
    (bundle / "ca.crt").write_text("rotated CA\n")
    rotated = run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")

    assert files_under(seeded_root).keys() == before.keys()
    assert "wrote" not in again.stdout and "created" not in again.stdout
    assert f"unchanged {seeded_root}/etc/lepton/agent.toml" in again.stdout
    assert f"wrote {seeded_root}/etc/lepton/ca.crt" in rotated.stdout
    assert rotated.stdout.count("wrote ") == 1
    assert (seeded_root / "etc/lepton/ca.crt").read_text() == "rotated CA\n"


def test_upgrade_without_bundle_keeps_the_installed_config(bundle: Path, seeded_root: Path) -> None:
    run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")

    res = run_install("--root", str(seeded_root), "--skip-pip", "--dry-run")

    assert "would write" not in res.stdout
    assert "mosquitto_sub" not in res.stdout  # dry run: no "done" hints


@pytest.mark.parametrize(("damage", "args", "error"), [
    (None, [], "first install needs --bundle"),
    ("no-config", ["--bundle", "{bundle}"], "has no agent.toml"),
    ("bad-toml", ["--bundle", "{bundle}"], "is not valid TOML"),
    (None, ["--bundle", "{bundle}", "--bogus"], "unknown argument: --bogus"),
    (None, ["--bundle", "/nonexistent/bundle"], "is not a directory"),
])
def test_bad_input_is_refused_with_a_reason(bundle: Path, root: Path, damage: str | None, args: list[str],
                                            error: str) -> None:
    if damage == "no-config":
        (bundle / "agent.toml").unlink()
    elif damage == "bad-toml":
        (bundle / "agent.toml").write_text("device = \n")

    res = run_install(*[a.format(bundle=bundle) for a in args], "--root", str(root), "--skip-pip", check=False)

    assert res.returncode != 0
    assert error in res.stderr
    assert list(root.iterdir()) == []  # refused before changing anything


def test_live_dry_run_plans_user_and_systemctl_and_changes_nothing(bundle: Path, tmp_path: Path) -> None:
    etc_before = sorted(os.listdir("/etc"))

    res = run_install("--bundle", str(bundle), "--dry-run", systemd_running=tmp_path)

    assert "would run: systemctl enable lepton-agent.service" in res.stdout
    assert "would run: systemctl restart lepton-agent.service" in res.stdout
    assert "useradd --system" in res.stdout or "user lepton exists" in res.stdout
    assert "would write /etc/lepton/agent.toml" in res.stdout or "unchanged /etc/lepton/agent.toml" in res.stdout
    assert sorted(os.listdir("/etc")) == etc_before


def test_live_dry_run_without_systemd_only_enables_the_unit(bundle: Path) -> None:
    res = run_install("--bundle", str(bundle), "--dry-run")

    assert "would run: systemctl enable lepton-agent.service" in res.stdout
    assert "daemon-reload" not in res.stdout and "systemctl restart" not in res.stdout
    assert "systemd is not running here" in res.stdout


def test_bundle_wheels_are_what_pip_installs(bundle: Path, root: Path) -> None:
    wheels = bundle / "wheels"
    wheels.mkdir()
    wheel = wheels / "lepton_edge-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    (wheels / "constraints.txt").write_text("numpy==2.4.6\n")

    res = run_install("--bundle", str(bundle), "--root", str(root), "--dry-run")

    pip = f"{root}/opt/lepton/bin/python -m pip install --disable-pip-version-check"
    assert f"{pip} --no-index --no-deps \\<the\\ bundle\\'s\\ wheels" in res.stdout
    assert f"{pip} --find-links {wheels} --constraint {wheels}/constraints.txt {wheel}\\[edge\\]" in res.stdout
    assert f"{pip} --no-deps --force-reinstall {wheel}" in res.stdout


def fake_installed_agent(root: Path) -> None:
    """Stand-in for pip's console script in the temporary venv: the repo's real lepton-agent."""
    pytest.importorskip("edge_agent.cli", reason="the edge agent is not written yet")
    real = Path(sys.executable).parent / "lepton-agent"
    fake = root / "opt/lepton/bin/lepton-agent"
    fake.write_text(f'#!/bin/sh\nexec "{real}" "$@"\n')
    fake.chmod(0o755)


def test_bundle_config_is_validated_by_the_installed_agent(bundle: Path, seeded_root: Path) -> None:
    run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")
    fake_installed_agent(seeded_root)

    res = run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")

    assert f"agent.toml validated by {seeded_root}/opt/lepton/bin/lepton-agent" in res.stdout


def test_an_invalid_bundle_config_keeps_the_installed_one(bundle: Path, seeded_root: Path) -> None:
    run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip")
    fake_installed_agent(seeded_root)
    installed = (seeded_root / "etc/lepton/agent.toml").read_bytes()
    (bundle / "agent.toml").write_text((bundle / "agent.toml").read_text() + "frobnicate = true\n")

    res = run_install("--bundle", str(bundle), "--root", str(seeded_root), "--skip-pip", check=False)

    assert res.returncode != 0
    assert "frobnicate" in res.stderr and "the installed one was kept" in res.stderr
    assert (seeded_root / "etc/lepton/agent.toml").read_bytes() == installed


# ---- a bundle made by the real `lepton provision` ----------------------------------------------

@pytest.fixture
def provisioned(tmp_path: Path) -> Path:
    """`lepton keys init` + `lepton provision cam-7` on a 'workstation' directory."""
    pytest.importorskip("lepton_cli.provision", reason="lepton provision is not written yet")
    lepton = str(Path(sys.executable).parent / "lepton")
    ws = tmp_path / "workstation"
    ws.mkdir()
    subprocess.run([lepton, "keys", "init", "--dir", "keys"], cwd=ws, check=True, capture_output=True, timeout=60)
    pub = next((ws / "keys").glob("*.pub"))
    res = subprocess.run([lepton, "provision", "cam-7", "--broker-dir", "broker", "--host", "hub.local",
                          "--signing-pub", str(pub), "--out", "lepton-devices/cam-7"], cwd=ws, capture_output=True,
                         text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    return ws / "lepton-devices" / "cam-7"


def test_provisioned_bundle_installs_with_paths_under_etc_lepton(provisioned: Path, seeded_root: Path) -> None:
    config_name = next(p.name for p in provisioned.glob("*.toml"))

    run_install("--bundle", str(provisioned), "--root", str(seeded_root), "--skip-pip")

    etc = seeded_root / "etc/lepton"
    text = (etc / "agent.toml").read_text()
    assert str(provisioned) not in text  # no workstation path survives
    cfg = read_toml(etc / "agent.toml")
    paths = [cfg["model"]["public_key"], *cfg["mqtt"].get("tls", {}).values()]
    assert paths
    for p in paths:
        assert p.startswith("/etc/lepton/")
        assert (seeded_root / p.lstrip("/")).read_bytes() == (provisioned / Path(p).name).read_bytes()
    assert not (etc / config_name).exists() or config_name == "agent.toml"
    assert stat.S_IMODE((etc / "agent.toml").stat().st_mode) == 0o640  # it holds the MQTT password


def test_provisioned_bundle_plus_agent_env_is_a_valid_agent_config(provisioned: Path, seeded_root: Path) -> None:
    # The bundle knows identity and credentials; task and source are the site's choice, given
    # in agent.env (the unit's EnvironmentFile). The installed agent must accept the pair.
    (provisioned / "agent.env").write_text("LEPTON_TASK=digits\nLEPTON_SOURCE__TYPE=camera\n")
    run_install("--bundle", str(provisioned), "--root", str(seeded_root), "--skip-pip", "--dry-run")
    fake_installed_agent(seeded_root)

    res = run_install("--bundle", str(provisioned), "--root", str(seeded_root), "--skip-pip", check=False)

    assert res.returncode == 0, res.stderr
    assert "agent.toml validated by" in res.stdout
    assert stat.S_IMODE((seeded_root / "etc/lepton/agent.env").stat().st_mode) == 0o640


def test_local_package_is_installed_with_the_edge_extra_and_always_reinstalled(bundle: Path, root: Path,
                                                                               tmp_path: Path) -> None:
    wheel = tmp_path / "dist" / "lepton_edge-0.1.0-py3-none-any.whl"
    wheel.parent.mkdir()
    wheel.write_bytes(b"")

    res = run_install("--bundle", str(bundle), "--root", str(root), "--dry-run", "--package", str(wheel))

    pip = f"{root}/opt/lepton/bin/python -m pip install --disable-pip-version-check"
    assert f"{pip} --upgrade {wheel}\\[edge\\]" in res.stdout
    assert f"{pip} --no-deps --force-reinstall {wheel}" in res.stdout
