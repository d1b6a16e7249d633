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
