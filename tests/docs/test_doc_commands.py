"""Every command and option quoted in README.md and docs/*.md exists: checked against the real CLIs' --help.

The checker (tests/docs/doccommands.py) is tested on its own first: it must catch a made-up option,
subcommand or script, and must not trip on placeholders (PORT, COMMAND, ...), wrappers or prose.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.docs.doccommands import Command, check, commands_in, doc_files, parse_help


def problems(markdown: str) -> list[str]:
    found = commands_in(markdown, "t.md")
    assert found, "the checker found no command in the sample"
    return [p for c in found for p in check(c)]


def fenced(*lines: str, lang: str = "bash") -> str:
    return "\n".join([f"```{lang}", *lines, "```"])


# ---- the checker ---------------------------------------------------------------------------------
@pytest.mark.parametrize("markdown,needle", [
    (fenced("lepton up --duration 120 --frobnicate"), "`lepton up` has no option --frobnicate"),
    ("Run `lepton-agent --validat-config` first.", "`lepton-agent` has no option --validat-config"),
    (fenced("lepton tasks lst"), "`lepton tasks` has no subcommand 'lst'"),
    (fenced("lepton up -v"), "`lepton up` has no option -v"),  # -v belongs before the subcommand
    (fenced("lepton-agent run --config a.toml"), "`lepton-agent` takes no argument 'run'"),
    (fenced("lepton-worker models list --tsk digits"), "`lepton-worker models list` has no option --tsk"),
    (fenced(".venv/bin/lepton monitor --port 1883 \\", "    --rawest | head"), "has no option --rawest"),
    (fenced("bash scripts/nope.sh"), "no script scripts/nope.sh"),
    (fenced("bash scripts/up.sh --bogus"), "`lepton up` has no option --bogus"),
    (fenced("bash scripts/wheelhouse.sh --arch aarch64 --bogus"), "scripts/wheelhouse.sh has no option --bogus"),
    (fenced("python -m edge_agent --config a.toml --no-such-flag"), "`lepton-agent` has no option --no-such-flag"),
])
def test_the_checker_catches_what_does_not_exist(markdown, needle):
    found = problems(markdown)
    assert len(found) == 1 and needle in found[0], found


@pytest.mark.parametrize("markdown", [
    fenced("lepton monitor --port PORT --raw | head   # PORT is printed by `lepton up`"),
    fenced("lepton COMMAND --help"),
    fenced("lepton provision DEVICE --host HUB --task digits"),
    "`lepton monitor ... --password-file`",
    fenced("LEPTON_MQTT__PORT=1884 LEPTON_AGENT__DEVICE=cam-2 lepton-agent --config agent.toml"),
    fenced("sudo nice -n 5 /opt/lepton/bin/lepton-agent --config /etc/lepton/agent.toml > log 2>&1"),
    fenced("lepton-worker run --config worker.toml [--duration S] [--validate-config]"),
    fenced("$ lepton keys init --dir=/tmp/k && lepton keys show --dir /tmp/k", lang="console"),
    fenced("bash scripts/test.sh -k anything_pytest_takes"),
    fenced("lepton -v up --task camera"),
])
def test_the_checker_passes_placeholders_wrappers_and_real_options(markdown):
    assert problems(markdown) == []


def test_the_checker_ignores_what_runs_no_lepton_command():
    text = "\n".join([
        fenced("journalctl -u lepton-agent -f", "sudo rm -rf /opt/lepton /etc/lepton",
               "mosquitto_sub -v -t 'lepton/v1/#'", "echo lepton-agent: invalid config"),
        fenced("lepton up --bogus  # a Python fence is not shell", lang="python"),
        "prose about `lepton-agent:` output and `pip install 'lepton-edge[edge]'`",
    ])
    assert commands_in(text, "t.md") == []


def test_help_text_is_read_as_argparse_writes_it():
    h = parse_help("usage: x [-h] COMMAND ...\n\npositional arguments:\n  COMMAND\n    up     run it\n"
                   "    protocol-doc\n                 print it\n\noptions:\n  -h, --help   show\n"
                   "  --port PORT  the port\n  --task NAME|PATH\n               a task\n")
    assert h.subcommands == ("up", "protocol-doc") and h.positionals == 0
    assert h.options == {"-h": False, "--help": False, "--port": True, "--task": True}


def test_a_command_that_does_not_exist_is_reported():
    assert "does not exist" in check(Command("t.md:1", ("lepton", "nosuch"), ()))[0]


# ---- the docs ------------------------------------------------------------------------------------
def test_every_command_and_option_quoted_in_the_docs_exists():
    found = [c for p in doc_files() for c in commands_in(p.read_text(), p.name)]
    assert len(found) > 80, f"only {len(found)} commands found: is the extractor broken?"
    assert {c.prog[0] for c in found} >= {"lepton", "lepton-agent", "lepton-bridge", "lepton-worker", "script"}
    with ThreadPoolExecutor(4) as pool:
        bad = [p for ps in pool.map(check, found) for p in ps]
    assert bad == []
