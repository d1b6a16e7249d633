"""Common config mistakes, through each real command line: exit code 2 and one line that names the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.config import AgentConfig
from shared.process.config import ConfigError, load_config
from shared.process.config_errors import key_line

REPO = Path(__file__).resolve().parents[2]
AGENT = 'device = "cam-1"\ntask = "digits"\n[model]\nallow_unsigned = true\n'
FOLDER = '[source]\ntype = "folder"\npath = "frames"\n'
COMMANDS = {
    "agent": ["-m", "edge_agent", "--validate-config", "--config"],
    "bridge": ["-m", "hub_bridge", "--validate-config", "--config"],
    "worker": ["-m", "cloud_worker", "run", "--validate-config", "--config"],
    "console": ["-m", "lepton_cli.main", "console", "--validate-config", "--config"],
    "task": ["-m", "lepton_cli.main", "tasks", "check"],
}
PREFIX = {"agent": "lepton-agent:", "bridge": "lepton-bridge:", "worker": "lepton-worker:",
          "console": "lepton console:", "task": "lepton tasks check:"}

# (role, file text, what the one line must say, the line of the file it must name)
MISTAKES = [
    ("agent", AGENT + '[source]\nkind = "folder"\npath = "frames"\n',
     "source.type must be one of: camera, video, stream, folder, replay, csv; got key 'kind' "
     '(write type = "folder")', 6),
    ("agent", AGENT + '[source]\ntype = "foldr"\npath = "frames"\n',
     "source.type must be one of: camera, video, stream, folder, replay, csv; got 'foldr' "
     "(did you mean 'folder'?)", 6),
    ("agent", AGENT + FOLDER + "[mqtt]\nprot = 1884\n", "mqtt.prot: unknown key; did you mean 'port'?", 9),
    ("agent", AGENT + '[source]\ntype = "folder"\npath = "frames"\npatern = "*.png"\n',
     "source.patern: unknown key; did you mean 'pattern'?", 8),
    ("agent", 'device = cam-1\n', "not valid TOML", 1),
    ("agent", 'device = "cam-1"\ntask = "digits"\nsource = "folder"\n[model]\nallow_unsigned = true\n',
     "source must be a table whose type is one of: camera, video, stream, folder, replay, csv; got 'folder' "
     '(write [source] with type = "folder")', 3),
    ("agent", AGENT + FOLDER + "[outbox]\nttl_s = { hard = 5.0, escalation = 9.0 }\n",
     "outbox.ttl_s.escalation: key 'escalation': Input should be 'event', 'hard', 'feat' or 'telemetry'; "
     "got 'escalation'", 9),
    ("bridge", "[classes.escalation]\ncapcity = 10\n", "classes.escalation.capcity: unknown key; did you mean "
                                                      "'capacity'?", 2),
    ("bridge", 'statusinterval = 3\n', "statusinterval: unknown key; did you mean 'status_interval'?", 1),
    ("bridge", '[classes.event]\ncapacity = 10\nttl = 5\noverflow = "drop_old"\n',
     "classes.event.overflow: Input should be 'drop_oldest' or 'drop_newest'; got 'drop_old'", 4),
    ("worker", "[gate]\nmargn = 0.1\n", "gate.margn: unknown key; did you mean 'margin'?", 2),
    ("worker", "[train]\nseed = 3\n", "train: unknown key; did you mean 'training'?", 1),
    ("worker", 'torch_device = "gpu"\n', "torch_device: Input should be 'auto', 'cpu' or 'cuda'; got 'gpu'", 1),
    ("console", "prot = 9000\n", "prot: unknown key; did you mean 'port'?", 1),
    ("console", '[mqtt]\nhots = "broker.local"\n', "mqtt.hots: unknown key; did you mean 'host'?", 2),
    ("task", 'kind = "imag"', "kind: Input should be 'image' or 'window'; got 'imag'", None),
    ("task", '[decision]\ntreshold = 0.9', "decision.treshold: unknown key; did you mean 'threshold'?", None),
]


def _task_spec(tmp_path: Path, edit: str) -> tuple[Path, int]:
    """digits.toml with one mistake: a changed ``kind`` line, or a key added to a table."""
    text = (REPO / "lepton_tasks/specs/digits.toml").read_text()
    table, _, key = edit.rpartition("\n")
    old = table or 'kind = "image"'
    assert old in text
    text = text.replace(old, f"{table}\n{key}" if table else key, 1)
    spec = tmp_path / "bad.toml"
    spec.write_text(text)
    return spec, text.splitlines().index(key) + 1


@pytest.mark.parametrize("role,text,fix,line", MISTAKES, ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_a_common_mistake_exits_2_with_one_line_naming_the_fix(tmp_path, role, text, fix, line):
    if role == "task":
        conf, line = _task_spec(tmp_path, text)
    else:
        conf = tmp_path / f"{role}.toml"
        conf.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    out = subprocess.run([sys.executable, *COMMANDS[role], str(conf)], capture_output=True, text=True,
                         timeout=120, cwd=REPO, env=env)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = [ln for ln in out.stderr.splitlines() if ln.strip() and "INFO" not in ln]
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith(PREFIX[role]) and fix in lines[0], out.stderr
    assert f"{conf}:{line}" in lines[0] or f"(line {line})" in lines[0], out.stderr
    assert "Traceback" not in out.stderr and "discriminator" not in out.stderr


def test_an_unknown_key_far_from_any_known_one_lists_the_known_keys(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text(AGENT + FOLDER + "[escalation.policy]\nthreshold = 0.5\n")
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, conf, environ={})
    msg = str(err.value)
    assert "escalation: unknown key; known keys: device, root, mqtt, task" in msg and f"{conf}:8" in msg


def test_a_mistake_set_by_environment_is_blamed_on_the_variable(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text(AGENT)
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, conf, environ={"LEPTON_SOURCE__TYPE": "rtsp"})
    msg = str(err.value)
    assert "source.type must be one of: camera, video, stream, folder, replay, csv; got 'rtsp'" in msg
    assert "(from LEPTON_SOURCE__TYPE)" in msg


@pytest.mark.parametrize("text,keys,line", [
    ("a = 1\n[b]\nc = 2\n", ("b", "c"), 3),
    ("a = 1\n[b.c]\nd = 2\n", ("b",), 2),
    ("b.c = 1\n", ("b", "c"), 1),
    ("[x]\nc = 1\n[b]\nc = 2\n", ("b", "c"), 4),
    ('s = { type = "folder", patern = "*" }\n', ("s", "patern"), 1),
    ("a = 1\n", ("zzz",), None),
])
def test_key_line_finds_where_a_key_is_written(text, keys, line):
    assert key_line(text, keys) == line
