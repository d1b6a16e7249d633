"""What the docs tell a newcomer matches what the code does (the checks a reader would make by hand)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from lepton_cli.main import main as lepton

REPO = Path(__file__).resolve().parents[2]


def tracked_text_files() -> list[Path]:
    out = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout.split()
    return [REPO / f for f in out if f.endswith((".py", ".md", ".toml", ".sh", ".yml", ".conf", ".service"))]


def test_no_project_file_cites_notes_users_do_not_have():
    names = ("BASELINES" + ".md", "DATASETS" + ".md", "BASELINES" + " pitfall")  # split: this file is tracked too
    offenders = [str(p.relative_to(REPO)) for p in tracked_text_files()
                 if p.exists() and any(n in p.read_text(errors="replace") for n in names)]
    assert offenders == []


def test_the_bundle_files_the_docs_list_are_the_ones_provision_writes(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    monkeypatch.chdir(tmp_path)
    assert lepton(["keys", "init"]) == 0
    assert lepton(["provision", "cam-1", "--host", "hub.local", "--task", "digits"]) == 0
    written = {p.name for p in (tmp_path / "xdg" / "lepton" / "devices" / "cam-1").iterdir()}
    for doc in (REPO / "docs" / "DEPLOY.md", REPO / "edge_agent" / "deploy" / "README.md"):
        text = doc.read_text()
        listed = re.search(r"-> ~/\.local/state/lepton/devices/cam-1/:? ?([^\n]+)", text)
        assert listed, f"{doc.name} does not say where the bundle goes"
        names = {n.strip(" `{}") for n in listed.group(1).split(",")}
        assert names == written, (doc.name, names, written)
        assert "model-signing.pub" not in text


def test_the_readme_quotes_the_run_it_shows():
    """Each row of the README's camera table is that version's row in the recorded benchmark."""
    results = json.loads((REPO / "bench" / "results" / "bench_learning.json").read_text())
    board = next(r["board"] for r in results["runs"] if r["task"] == "camera" and r["labeller_mode"] == "queue")
    readme = (REPO / "README.md").read_text()
    shows = readme[readme.index("### What one run shows"):readme.index("### Staged rollout")]
    rows = re.findall(r"^\| v(\d+)[^|]*\| (\d+) \| \**([0-9.]+) / ([0-9.–]+) / ([0-9.–]+)", shows, re.M)
    assert len(rows) >= 5, "the README's camera table is missing"
    by_version = {v["version"]: v for v in board["versions"]}
    for version, labels, edge, cloud, joint in rows:
        v = by_version[int(version)]
        quoted = (int(labels), float(edge), None if cloud == "–" else float(cloud), None if joint == "–" else float(joint))
        recorded = (v["labels"], round(v["holdout_edge_acc"], 3),
                    None if v["holdout_cloud_acc"] is None else round(v["holdout_cloud_acc"], 3),
                    None if v["holdout_joint_acc"] is None else round(v["holdout_joint_acc"], 3))
        assert quoted == recorded, f"README's v{version} row is not the recorded run's"
    worker_tables = [ln for ln in (REPO / "docs" / "WORKER.md").read_text().splitlines() if ln.startswith("|")]
    assert "0.886" not in readme and not [ln for ln in worker_tables if "0.886" in ln]
    assert (REPO / "docs" / "report.png").exists() and "docs/report.png" in readme
