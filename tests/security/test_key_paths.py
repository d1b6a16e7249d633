"""Where `lepton keys init` and `lepton provision` put private keys: a per-user state directory,
0600 files in 0700 directories, and a warning when a target could be committed by accident."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from cloud_worker.config import WorkerConfig
from lepton_cli.main import main as lepton
from shared.process.config import load_config


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def state(tmp_path, monkeypatch) -> Path:
    """A user's state directory, and a working directory that must stay empty."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path / "xdg" / "lepton"


@pytest.fixture
def repo(tmp_path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    r = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(r)], check=True)
    (r / ".gitignore").write_text("/var/\n")
    return r


def test_keys_and_bundles_default_to_the_users_state_directory(state, capsys):
    assert lepton(["keys", "init"]) == 0
    assert lepton(["provision", "cam-1", "--host", "hub.local"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err
    assert list(Path.cwd().iterdir()) == [], "nothing may land in the working directory"
    keys, broker, bundle = state / "keys", state / "broker", state / "devices" / "cam-1"
    assert mode(keys / "signing.key") == 0o600 and mode(keys) == 0o700
    for secret in (broker / "server-ca.key", broker / "device-ca.key", broker / "server.key", broker / "passwd",
                   bundle / "client.key", bundle / "device.toml"):
        assert mode(secret) == 0o600, secret
    assert mode(broker) == 0o700 and mode(bundle) == 0o700
    # ... and so are the directories above them that these commands created: $XDG_STATE_HOME, lepton/
    assert mode(state.parent) == 0o700 and mode(state) == 0o700 and mode(state / "devices") == 0o700
    # the worker finds the key where `keys init` put it
    assert load_config(WorkerConfig, None, environ={}).signing_key == keys / "signing.key"


def test_a_target_inside_a_git_work_tree_is_warned_about(state, repo, capsys):
    assert lepton(["keys", "init", "--dir", str(repo / "keys")]) == 0
    err = capsys.readouterr().err
    assert f"the model-signing private key in {repo / 'keys'} lies inside the git work tree {repo}" in err
    assert "git add ." in err
    assert lepton(["provision", "cam-2", "--signing-pub", str(repo / "keys" / "signing.pub"),
                   "--broker-dir", str(repo / "broker"), "--out", str(repo / "bundle")]) == 0
    err = capsys.readouterr().err
    assert "the broker's CA keys and password file in" in err and "cam-2's client key and password in" in err


def test_an_ignored_directory_of_a_work_tree_is_fine(state, repo, capsys):
    assert lepton(["keys", "init", "--dir", str(repo / "var" / "keys")]) == 0
    assert "warning" not in capsys.readouterr().err


def test_a_private_directory_leaves_existing_parents_alone(tmp_path):
    from shared.security.statedir import private_dir

    tmp_path.chmod(0o755)
    (tmp_path / "shared").mkdir(mode=0o755)
    private_dir(tmp_path / "shared" / "a" / "b")
    assert mode(tmp_path / "shared") == 0o755  # not ours to change
    assert mode(tmp_path / "shared" / "a") == 0o700 and mode(tmp_path / "shared" / "a" / "b") == 0o700
