"""Every console script ends quietly on a closed pipe (`lepton-agent --validate-config | head -3`).

Off a TTY, through real pipes: one whose reader is gone before the first write (every write fails,
deterministically), and a real `| head -3` in bash with pipefail. The exit status is 0
(shared/process/closed_pipe.py says why).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
PY = sys.executable
AGENT_TOML = 'device = "cam-1"\ntask = "digits"\n[source]\ntype = "camera"\n[model]\nallow_unsigned = true\n'
NOISE = ("Traceback", "BrokenPipe", "Exception ignored", "Errno 32")

COMMANDS = {
    "lepton --help": [str(BIN / "lepton"), "--help"],
    "lepton tasks list": [str(BIN / "lepton"), "tasks", "list"],
    "lepton protocol-doc": [str(BIN / "lepton"), "protocol-doc"],
    "python -m lepton_cli.main --help": [PY, "-m", "lepton_cli.main", "--help"],
    "python -m shared.protocol.protocol_doc": [PY, "-m", "shared.protocol.protocol_doc"],
    "lepton-agent --validate-config": [str(BIN / "lepton-agent"), "--config", "{agent}", "--validate-config"],
    "lepton-agent --help": [str(BIN / "lepton-agent"), "--help"],
    "python -m edge_agent --validate-config": [PY, "-m", "edge_agent", "--config", "{agent}", "--validate-config"],
    "lepton-bridge --validate-config": [str(BIN / "lepton-bridge"), "--validate-config"],
    "python -m hub_bridge --validate-config": [PY, "-m", "hub_bridge", "--validate-config"],
    "lepton-worker run --validate-config": [str(BIN / "lepton-worker"), "run", "--validate-config"],
    "lepton-worker --help": [str(BIN / "lepton-worker"), "--help"],
    "python -m cloud_worker run --validate-config": [PY, "-m", "cloud_worker", "run", "--validate-config"],
}


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}


def run_into_closed_pipe(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    r, w = os.pipe()
    os.close(r)  # the reader is gone before the first write
    try:
        return subprocess.run(cmd, stdout=w, stderr=subprocess.PIPE, text=True, timeout=120, cwd=cwd, env=_env())
    finally:
        os.close(w)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_console_script_into_a_closed_pipe_ends_quietly(tmp_path, name):
    (tmp_path / "agent.toml").write_text(AGENT_TOML)
    cmd = [a.format(agent=tmp_path / "agent.toml") for a in COMMANDS[name]]
    r = run_into_closed_pipe(cmd, tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    assert not [n for n in NOISE if n in r.stderr], r.stderr[-2000:]


def test_the_issue_s_own_command_through_head_with_pipefail(tmp_path):
    (tmp_path / "agent.toml").write_text(AGENT_TOML)
    script = (f"set -o pipefail; for i in 1 2 3 4 5; do {PY} -m edge_agent --config agent.toml --validate-config "
              "| head -3 > /dev/null || echo FAILED $?; done")
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=_env())
    assert r.returncode == 0 and "FAILED" not in r.stdout, r.stdout + r.stderr
    assert not [n for n in NOISE if n in r.stderr], r.stderr[-2000:]


def test_without_the_helper_the_same_output_fails_noisily(tmp_path):
    # The control: what the console scripts did before (and why the flush must happen inside main).
    prog = ("import sys\nfrom shared.process.closed_pipe import ends_quietly_on_closed_pipe\n"
            "def main(argv=None):\n    print('x' * 100)\n    return 0\n"
            "sys.exit(ends_quietly_on_closed_pipe(main)() if sys.argv[1] == 'wrapped' else main())\n")
    bare = run_into_closed_pipe([PY, "-c", prog, "bare"], Path.cwd())
    wrapped = run_into_closed_pipe([PY, "-c", prog, "wrapped"], Path.cwd())
    assert bare.returncode != 0 and "BrokenPipeError" in bare.stderr  # a traceback, or "Exception ignored" and 120
    assert wrapped.returncode == 0 and wrapped.stderr == ""
