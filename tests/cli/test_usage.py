"""`lepton SUBCOMMAND --bogus` reports the error with that subcommand's usage, not the top-level one."""

from __future__ import annotations

import pytest

from lepton_cli.main import main


@pytest.mark.parametrize("argv,usage", [(["up", "--bogus"], "usage: lepton up "),
                                        (["keys", "init", "--bogus"], "usage: lepton keys init "),
                                        (["monitor", "--bogus"], "usage: lepton monitor ")])
def test_unknown_option_shows_the_subcommands_usage(argv, usage, capsys):
    with pytest.raises(SystemExit) as ex:
        main(argv)
    err = capsys.readouterr().err
    assert ex.value.code == 2 and err.startswith(usage) and "unrecognized arguments: --bogus" in err


def test_up_help_shows_defaults_and_what_duration_0_means(capsys):
    with pytest.raises(SystemExit):
        main(["up", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "simulated agents per task (default: 2)" in text
    assert "seconds between status lines without the TUI (default: 10.0)" in text
    assert "--duration DURATION stop after this many seconds; 0 or unset runs until Ctrl-C or SIGTERM" in text
    assert "(default: None)" not in text and "(default: False)" not in text


def test_the_package_metadata_builds_without_deprecation_warnings():
    import warnings
    from pathlib import Path

    pytest.importorskip("setuptools")
    from setuptools.config.pyprojecttoml import read_configuration

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        conf = read_configuration(Path(__file__).resolve().parents[2] / "pyproject.toml")
    assert conf["project"]["license"] == "Apache-2.0"
    assert not [w for w in caught if "license" in str(w.message).lower()], [str(w.message) for w in caught]
