"""edge_agent/deploy/install-pi.sh refuses, even on a dry run, a bundle the agent could never start
from: no [source] (nor LEPTON_SOURCE__TYPE in the bundle's agent.env), no device, no task."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "edge_agent" / "deploy" / "install-pi.sh"


def python311() -> str:
    for cand in ("python3", sys.executable):
        r = subprocess.run([cand, "-c", "import sys, tomllib, ensurepip; sys.exit(sys.version_info < (3, 11))"],
                           capture_output=True)
        if r.returncode == 0:
            return cand
    pytest.skip("install-pi.sh needs python3 >= 3.11 with venv support (Debian: apt-get install -y python3-venv)")


def dry_run(bundle: Path, root: Path) -> subprocess.CompletedProcess[str]:
    root.mkdir(exist_ok=True)
    return subprocess.run(["bash", str(SCRIPT), "--bundle", str(bundle), "--root", str(root), "--dry-run"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": python311()})


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """What `lepton provision cam-7 --task digits` emits: a device.toml without [source]."""
    b = tmp_path / "cam-7"
    b.mkdir()
    (b / "device.toml").write_text('device = "cam-7"\ntask = "digits"\n[mqtt]\nhost = "hub.local"\n'
                                   '[model]\npublic_key = "signing.pub"\n')
    (b / "signing.pub").write_text("public key\n")
    return b


def test_a_dry_run_of_a_bundle_without_a_source_fails_and_says_what_to_add(bundle, tmp_path):
    r = dry_run(bundle, tmp_path / "root")
    assert r.returncode == 1, r.stdout
    assert "does not set source.type" in r.stderr and "LEPTON_SOURCE__TYPE=camera" in r.stderr
    assert not any((tmp_path / "root").iterdir()), "a dry run changes nothing"


@pytest.mark.parametrize("env", ["LEPTON_SOURCE__TYPE=camera", "export LEPTON_AGENT__SOURCE__TYPE='camera'",
                                 'LEPTON_SOURCE={"type": "camera"}'])
def test_the_source_may_come_from_the_bundles_agent_env(bundle, tmp_path, env):
    (bundle / "agent.env").write_text(f"# what the device captures\n{env}\n")
    r = dry_run(bundle, tmp_path / "root")
    assert r.returncode == 0, r.stderr
    assert "dry run finished: nothing was changed" in r.stdout


def test_a_bundle_without_a_task_fails_too(bundle, tmp_path):
    text = (bundle / "device.toml").read_text().replace('task = "digits"\n', "") + '[source]\ntype = "camera"\n'
    (bundle / "device.toml").write_text(text)
    r = dry_run(bundle, tmp_path / "root")
    assert r.returncode == 1 and "does not set task " in r.stderr, r.stderr
