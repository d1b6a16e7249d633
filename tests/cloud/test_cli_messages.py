"""`lepton-worker` messages a newcomer meets: usage of the subcommand, where the registry was looked for."""

from __future__ import annotations

import os

import pytest

from cloud_worker.cli import main


@pytest.fixture
def empty_registry(tmp_path, monkeypatch):
    for k in [k for k in os.environ if k.startswith("LEPTON_")]:
        monkeypatch.delenv(k)
    monkeypatch.setenv("LEPTON_WORKER__REGISTRY", str(tmp_path / "nowhere"))
    return (tmp_path / "nowhere").resolve()


def test_an_unknown_option_shows_the_subcommands_usage(capsys):
    with pytest.raises(SystemExit) as ex:
        main(["run", "--bogus"])
    err = capsys.readouterr().err
    assert ex.value.code == 2
    assert err.startswith("usage: lepton-worker run ") and "lepton-worker run: error: unrecognized arguments: --bogus" in err


def test_models_list_with_no_registry_says_where_it_looked(empty_registry, capsys):
    assert main(["models", "list"]) == 0
    out, err = capsys.readouterr()
    assert out == ""
    assert f"no versions of any task in the model registry at {empty_registry} (the directory does not exist)" in err
    assert "LEPTON_WORKER__REGISTRY" in err and "bootstrap --task" in err


def test_models_show_of_an_unknown_task_names_the_task_and_the_registry(empty_registry, capsys):
    assert main(["models", "show", "--task", "nosuch"]) == 1
    err = capsys.readouterr().err
    assert f"task 'nosuch' has no versions in the model registry at {empty_registry}" in err
    assert "version 0" not in err


def test_models_list_points_at_the_last_lepton_up_runs_registry(empty_registry, tmp_path, monkeypatch, capsys):
    for name in ("20261201-100000", "20261202-100000"):
        run = tmp_path / "var" / "up" / name
        (run / "registry").mkdir(parents=True)
        (run / "worker.toml").write_text("")
        os.utime(run / "worker.toml")
    old = tmp_path / "var" / "up" / "20261201-100000"
    os.utime(old, (1, 1))  # the older run
    monkeypatch.chdir(tmp_path)
    assert main(["models", "list"]) == 0
    err = capsys.readouterr().err
    new = tmp_path / "var" / "up" / "20261202-100000"
    assert f"models list --config {new.relative_to(tmp_path) / 'worker.toml'}" in err
