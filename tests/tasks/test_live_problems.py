"""Anomaly and forecast tasks are refused by name where the live loop would run them as classifiers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lepton_cli.main import main as lepton
from lepton_tasks import TaskSpecError, load_task, require_live

REPO = Path(__file__).resolve().parents[2]


def test_only_classification_is_live():
    assert require_live(load_task("digits")).name == "digits"
    with pytest.raises(TaskSpecError, match="health-anomaly is an anomaly task.*bench/bench_anomaly.py"):
        require_live(load_task("health-anomaly"))


def test_lepton_up_and_the_worker_refuse_an_anomaly_task_in_one_line(capsys):
    assert lepton(["up", "--task", "industrial-anomaly", "--duration", "1"]) == 2
    assert "industrial-anomaly is an anomaly task" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "cloud_worker", "run", "--task", "health-anomaly"], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("lepton-worker: problem: health-anomaly")
