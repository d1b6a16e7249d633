"""lepton-agent's command line: config validation, exit codes, a real timed run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.cli import main
from shared.topics import Kind
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
                   f'fps = 50.0\n[telemetry]\ninterval_s = 0.5\n')
    col = collect(topics, "cli-dev")
    r = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(cfg), "--duration", "3"],
                       capture_output=True, text=True, timeout=60, cwd=EXAMPLE.parents[2])
    assert r.returncode == 0, r.stderr[-2000:]
    wait_until(lambda: col.of(Kind.STATUS) and col.of(Kind.STATUS)[-1].state == "offline", what="offline status")
    tele = col.of(Kind.TELEMETRY)
    assert tele and tele[-1].counters.get("frames.no_model", 0) > 0  # no model anywhere: counted, nothing published
    assert col.count(Kind.PRED) == 0
