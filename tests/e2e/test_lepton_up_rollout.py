"""`lepton up --rollout ... --inject-bad-release`: the summary and the report show a release rolled back and one
promoted, each decision with its figures (a shorter plan than the demo's, so the run fits in a minute)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_lepton_up_shows_a_bad_release_rolled_back_and_a_good_one_promoted(tmp_path):
    out = tmp_path / "summary.json"
    html = tmp_path / "run.html"
    proc = subprocess.run([sys.executable, "-m", "lepton_cli.main", "up", "--duration", "65", "--no-tui",
                           "--agents", "5", "--label-fraction", "0.5", "--retrain-labels", "80",
                           "--rollout", "canary=40%,min-stage=8,min-labels=30,min-samples=60",
                           "--inject-bad-release", "1", "--workdir", str(tmp_path / "stack"), "--summary", str(out),
                           "--report", str(html), "--print-every", "5"],
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"lepton up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    summary = json.loads(out.read_text())
    ro = summary["rollout"]
    # Assert: the forced release went to 40 % (two of five devices) and was rolled back on its figures
    bad = next(r for r in ro["releases"] if r["forced"])
    assert bad["state"] == "rolled_back" and bad["restored"] > bad["candidate"]
    rollback = next(e for e in ro["events"] if e["action"] == "rollback")
    assert rollback["release"] == bad["release"] and rollback["group"].count("cam-") == 2
    f = rollback["figures"]
    assert f["candidate"]["accuracy"] < f["control"]["accuracy"] and f["bounds"][1] < -f["margin"]
    assert f["candidate"]["labelled"] >= 30 and f["control"]["labelled"] >= 30
    # ... and a better one reached everyone, on its figures
    assert ro["promoted"] >= 1 and ro["rolled_back"] == 1
    promote = next(e for e in ro["events"] if e["action"] == "promote")
    assert promote["figures"]["bounds"][0] > -promote["figures"]["margin"]
    # the printed summary, the status lines and the report say so
    assert "  rollout: " in proc.stdout and f"  rolled back {bad['release']} " in proc.stdout
    assert "rollout=digits-v" in proc.stdout
    page = html.read_text()
    assert "Staged rollout:" in page and "rolled back" in page and "rollback" in page and "promote" in page
    assert summary["frames_dropped"] == 0 and summary["agent_model_rejections"] == 0
    assert all(c == 0 for c in summary["exit_codes"].values()), summary["exit_codes"]


def test_rollout_options_are_checked_in_one_line(tmp_path):
    def up(*argv):
        return subprocess.run([sys.executable, "-m", "lepton_cli.main", "up", "--duration", "1", "--no-tui",
                               "--workdir", str(tmp_path / "w"), *argv], capture_output=True, text=True, timeout=60)

    bad = up("--rollout", "canary=40")
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "needs a '%' (40%)" in bad.stderr
    unknown = up("--rollout", "canary=40%,speed=9")
    assert unknown.returncode == 2 and "'speed=9' is not one of canary=" in unknown.stderr
    alone = up("--inject-bad-release")
    assert alone.returncode == 2 and "--inject-bad-release needs --rollout" in alone.stderr
