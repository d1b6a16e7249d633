"""What the docs tell a newcomer matches what the code does (the checks a reader would make by hand)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from lepton_cli.main import main as lepton

REPO = Path(__file__).resolve().parents[2]
RECORDED = Path(__file__).with_name("data") / "up_summary.json"


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
    s = json.loads(RECORDED.read_text())
    readme = (REPO / "README.md").read_text()
    v1 = next(e for e in s["events"]["published"] if e["version"] == 1)
    row = re.search(r"^\| v1 [^|]*\| [^|]*\| ([0-9.]+) \|", readme, re.M)
    assert row and float(row.group(1)) == round(v1["accuracy"], 3), "README's v1 holdout is not the recorded run's"
    worker_tables = [ln for ln in (REPO / "docs" / "WORKER.md").read_text().splitlines() if ln.startswith("|")]
    assert "0.886" not in readme and not [ln for ln in worker_tables if "0.886" in ln]
    assert (REPO / "docs" / "report.png").exists() and "docs/report.png" in readme
