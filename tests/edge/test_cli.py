"""lepton-agent's command line: config validation, exit codes, a real timed run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until

EXAMPLE = Path(__file__).resolve().parents[2] / "edge_agent" / "deploy" / "agent.example.toml"


def test_example_config_validates(capsys):
    assert main(["--config", str(EXAMPLE), "--validate-config"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["device"] == "cam-1" and out["source"]["type"] == "replay"


def test_bad_config_exits_2_with_the_key_named(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('device = "cam-1"\ntask = "digits"\n[source]\ntype = "replay"\ncolour = "red"\n')
    assert main(["--config", str(bad), "--validate-config"]) == 2
    assert "colour" in capsys.readouterr().err


def test_every_config_field_has_a_description():
    from pydantic import BaseModel

    from edge_agent import config as C

    models = [v for v in vars(C).values() if isinstance(v, type) and issubclass(v, BaseModel) and v.__module__ == C.__name__]
    missing = [f"{m.__name__}.{n}" for m in models for n, f in m.model_fields.items() if not f.description]
    assert len(models) > 10 and not missing, missing


@pytest.mark.slow
def test_agent_process_runs_for_duration_and_says_goodbye(broker, collect, topics, tmp_path):
    import cv2
    import numpy as np

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):  # a folder source starts at once (a dataset replay first loads the dataset)
        cv2.imwrite(str(frames / f"{i}.png"), np.full((32, 32, 3), 40 * i, np.uint8))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device = "cli-dev"\ntask = "digits"\nroot = "{topics.root}"\nstate_dir = "{tmp_path / "st"}"\n'
                   f'[mqtt]\nport = {broker.port}\n[source]\ntype = "folder"\npath = "{frames}"\nloop = true\n'
                   f'fps = 50.0\n[telemetry]\ninterval_s = 0.5\n[model]\nallow_unsigned = true\n')
    col = collect(topics, "cli-dev")
    r = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(cfg), "--duration", "3"],
                       capture_output=True, text=True, timeout=60, cwd=EXAMPLE.parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "WARNING edge_agent.agent: model.allow_unsigned = true: this agent runs ANY model" in r.stderr
    wait_until(lambda: col.of(Kind.STATUS) and col.of(Kind.STATUS)[-1].state == "offline", what="offline status")
    tele = col.of(Kind.TELEMETRY)
    assert tele and tele[-1].counters.get("frames.no_model", 0) > 0  # no model anywhere: counted, nothing published
    assert col.count(Kind.PRED) == 0


def _minimal(tmp_path: Path, model: str = "", mqtt: str = "") -> Path:
    import cv2
    import numpy as np

    (tmp_path / "frames").mkdir(exist_ok=True)
    cv2.imwrite(str(tmp_path / "frames" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    cfg = tmp_path / "agent.toml"
    cfg.write_text(f'device = "cam-1"\ntask = "digits"\nstate_dir = "{tmp_path / "st"}"\n[source]\ntype = "folder"\n'
                   f'path = "{tmp_path / "frames"}"\n[mqtt]\n{mqtt}[model]\n{model}')
    return cfg


def test_an_agent_without_a_public_key_does_not_start_and_says_what_to_set(tmp_path, capsys):
    assert main(["--config", str(_minimal(tmp_path)), "--validate-config"]) == 2
    err = capsys.readouterr().err
    assert "model: no model.public_key: this agent runs only models signed by your stack's key" in err
    assert "model.allow_unsigned = true to run unsigned models" in err


def test_a_public_key_and_allow_unsigned_together_are_refused(tmp_path, capsys):
    cfg = _minimal(tmp_path, 'public_key = "signing.pub"\nallow_unsigned = true\n')
    assert main(["--config", str(cfg), "--validate-config"]) == 2
    assert "model.public_key and model.allow_unsigned = true contradict each other" in capsys.readouterr().err


def test_allow_unsigned_is_an_explicit_setting_env_included(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LEPTON_AGENT__MODEL__ALLOW_UNSIGNED", "true")
    assert main(["--config", str(_minimal(tmp_path)), "--validate-config"]) == 0
    model = json.loads(capsys.readouterr().out)["model"]
    assert model["allow_unsigned"] is True and model["public_key"] is None


def _notify_socket(path: Path):
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.1)
    return s


@pytest.mark.slow
@pytest.mark.parametrize("case", ["closed_port", "unresolvable_host"])
def test_an_agent_that_cannot_reach_its_broker_says_why_and_keeps_trying(tmp_path, case):
    # Prepare: nothing listens on the port, or the name does not resolve
    from shared.transport.broker import free_port

    host, port = ("127.0.0.1", free_port()) if case == "closed_port" else ("nonexistent.invalid", 1883)
    cfg = _minimal(tmp_path, "allow_unsigned = true\n", f'host = "{host}"\nport = {port}\n')
    notify = _notify_socket(tmp_path / "notify.sock")
    env = {**__import__("os").environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock")}
    # Execute: a real process, the default backoff (up to 10 s) and log level, for 4 s
    r = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(cfg), "--duration", "4"],
                       capture_output=True, text=True, timeout=60, cwd=EXAMPLE.parents[2], env=env)
    statuses = []
    while True:
        try:
            statuses.append(notify.recv(512).decode())
        except TimeoutError:
            break
    notify.close()
    # Assert: where, why, when again; one line for the outage so far (the retries are at DEBUG)
    reason = {"closed_port": "connection refused (is the broker running, on this port?)",
              "unresolvable_host": "cannot resolve host 'nonexistent.invalid' ("}[case]
    lines = [ln.split(" INFO shared.transport.mqtt.connect: ", 1)[1] for ln in r.stderr.splitlines()
             if " INFO shared.transport.mqtt.connect: " in ln]
    assert r.returncode == 0, r.stderr[-2000:]
    assert lines[0] == f"cam-1: connecting to {host}:{port}"
    assert len(lines) == 2 and lines[1].startswith(f"cam-1: cannot connect to {host}:{port}: {reason}"), lines
    assert "; retrying in " in lines[1]
    # ... and systemd's STATUS line says the same
    broker = [s for s in statuses if s.startswith("STATUS=broker: ")]
    assert broker[0] == f"STATUS=broker: connecting to {host}:{port}"
    assert broker[-1].startswith(f"STATUS=broker: cannot connect to {host}:{port}: {reason}"), broker
    assert "READY=1" in statuses and statuses[-1] == "STOPPING=1", statuses
