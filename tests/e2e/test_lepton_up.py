"""End to end: `lepton up` as a user runs it — real mosquitto, bridge, worker, agents, labeller."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.broker]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[dict, subprocess.CompletedProcess, Path]:
    run = tmp_path_factory.mktemp("up")
    out = run / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "lepton_cli.main", "up", "--duration", "75", "--no-tui",
                           "--agents", "2", "--fps", "10", "--workdir", str(run / "stack"), "--summary", str(out),
                           "--report", str(run / "run.html"), "--print-every", "5"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"lepton up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text()), proc, run / "run.html"


@pytest.fixture(scope="module")
def summary(run) -> dict:
    return run[0]


def test_a_newer_model_is_published_and_every_agent_runs_it(summary):
    newest = summary["models"]["digits"]["version"]
    assert newest >= 2, summary["models"]
    devices = summary["devices"]
    assert set(devices) == {"cam-1", "cam-2"}
    assert all(d["model"] == newest for d in devices.values()), {k: d["model"] for k, d in devices.items()}
    assert summary["hot_swaps"] >= 2 * newest  # v1 load + each upgrade, on both agents


def test_newer_model_is_more_accurate_on_ground_truth_than_v1(summary):
    per_version = summary["accuracy_per_version_edge_only"]["digits"]
    v1 = per_version["v1"]
    later = [(int(k[1:]), v) for k, v in per_version.items() if k != "v1" and v["samples"] >= 100]
    assert later, per_version
    _, best = max(later)
    assert v1["samples"] >= 100 and best["accuracy"] > v1["accuracy"], per_version


def test_no_qos1_message_lost_and_no_frame_dropped(summary):
    gaps = summary["qos1_seq_gaps"]
    assert gaps and all(v == 0 for v in gaps.values()), gaps
    assert summary["frames_dropped"] == 0
    assert summary["agent_model_rejections"] == 0 and summary["capture_errors"] == 0
    for dev, d in summary["devices"].items():
        errors = {k: v for k, v in d["counters"].items() if "error" in k or "failed" in k}
        assert not any(errors.values()), (dev, errors)


def test_joint_inference_answers_escalations(summary):
    assert 0 < summary["escalation_ratio"] < 0.6
    assert summary["cloud_answers"] > 0
    assert summary["uplink_bytes"] > 0 and summary["raw_frame_bytes"] > 0


def test_the_output_shows_the_run_as_it_is(run):
    summary, proc, _ = run
    out = proc.stdout
    # where the signing key is, a watch hint with readable topics only, then status lines off a terminal
    assert "verify models with " in out and "keys/signing.pub" in out
    assert "topics --json-filters)" in out and "'lepton/v1/#'" not in out
    assert out.count("] broker=connected devices=2 ") >= 10
    assert "  console: http://127.0.0.1:" in out and "/login?token=" in out  # the web console, with its login
    first = out[out.index("] broker="):out.index("models=digits:v1")]
    assert "worker=training_v1" in first or "worker=starting" in first, first
    # the stop says what it waits for; a few lines of figures, not the summary's JSON
    assert "lepton up: stopping: 2 agents (sending what they hold)… " in out and "broker… done" in out
    figures = out[out.index("lepton up: ran "):out.index("\nscoreboard")]
    assert len(figures.splitlines()) <= 8 and "{" not in figures, figures
    assert f"predictions, {summary['escalation_ratio']:.1%} escalated" in figures
    assert f"the gate refused {summary['gate_refusals']} candidate(s)" in figures
    # where the rest is: the summary (also in the run dir), the report, the registry, as commands
    stack = Path(summary["run_dir"])
    assert json.loads((stack / "summary.json").read_text())["predictions"] == summary["predictions"]
    tail = out[out.index("\nrun dir "):]
    assert "summary.json (all figures and the time series;" in tail and "report   " in tail
    assert f"models list --config {stack / 'worker.toml'} (registry {stack / 'registry'})" in tail


def test_the_summary_records_a_time_series_and_the_report_shows_it(run, tmp_path):
    from tests.cli.chromium import open_page
    from tests.cli.test_report import PLOTS, plots_in

    summary, _, html = run
    points = summary["timeline"]["points"]
    assert len(points) >= 30  # every 2 s for 75 s
    assert points[-1]["preds"] == summary["predictions"] and points[-1]["joint"]
    assert {e["device"] for e in summary["events"]["swaps"]} == {"cam-1", "cam-2"}
    assert html.exists()
    page = open_page(html, tmp_path / "run.png")
    assert page.console == [] and list(plots_in(page.dom)) == list(PLOTS)
    assert all(n > 0 for n in plots_in(page.dom).values())


def test_processes_exit_cleanly(summary):
    assert summary["exit_codes"] and all(c == 0 for c in summary["exit_codes"].values()), summary["exit_codes"]
    assert Path(summary["run_dir"]).is_dir()


def test_missing_mosquitto_busy_port_and_bad_options_give_one_clear_line(tmp_path):
    import os
    import socket

    def up(*argv, env=None):
        return subprocess.run([sys.executable, "-m", "lepton_cli.main", "up", "--duration", "1", "--no-tui",
                               "--workdir", str(tmp_path / "w"), *argv], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, **(env or {})))

    missing = up(env={"LEPTON_MOSQUITTO": str(tmp_path / "no-mosquitto")})
    assert missing.returncode == 69
    assert missing.stderr.strip().count("\n") == 0 and "apt-get install -y mosquitto" in missing.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        busy = up("--port", str(port))
    assert busy.returncode == 69
    assert busy.stderr.strip() == f"lepton up: port {port} is busy: pick another with --port or stop what uses it"
    bad = up("--agents", "0")
    assert bad.returncode == 2 and bad.stderr.strip() == "lepton up: --agents must be at least 1"
