"""What `lepton up` prints at the end: a few lines of figures and where the rest is, not the JSON."""

from __future__ import annotations

import json
from pathlib import Path

from lepton_cli.upsummary import short_summary, shown, where

RECORDED = Path(__file__).with_name("data") / "up_summary.json"


def test_the_figures_fit_a_few_short_lines():
    s = json.loads(RECORDED.read_text())
    lines = short_summary(s, 121.4)
    assert lines[0] == "lepton up: ran 121 s; every process exited 0"
    assert len(lines) <= 8 and all(len(ln) <= 100 for ln in lines), lines
    newest = s["models"]["digits"]["version"]
    assert f"  digits: v1 to v{newest} published; 2 of 2 agents on v{newest}" in lines
    assert any(ln.startswith(f"  {s['predictions']:,} predictions, ") for ln in lines)
    assert not any("{" in ln for ln in lines)


def test_a_failed_process_and_no_model_are_said_plainly():
    lines = short_summary({"exit_codes": {"worker": 1, "bridge": 0}, "predictions": 0}, 5)
    assert lines[0] == "lepton up: ran 5 s; exit codes worker=1"
    assert "no model was published" in lines[1]


def test_where_names_commands_that_run_from_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "var" / "up" / "20261201-120000"
    lines = where(run, run / "summary.json", tmp_path / "r.html")
    assert lines[0] == "run dir var/up/20261201-120000:"
    assert "report var/up/20261201-120000/summary.json -o run.html" in lines[1]
    assert lines[2] == "  report   r.html"
    assert lines[3].endswith("models list --config var/up/20261201-120000/worker.toml "
                             "(registry var/up/20261201-120000/registry)")
    assert shown("/elsewhere/x") == "/elsewhere/x"


def test_the_uplink_line_names_what_the_raw_side_is_per_task_kind():
    def line(kinds: list[str]) -> str:
        s = {"uplink_bytes": 929_000, "raw_frame_bytes": 1_000_000,
             "scoreboard": [{"task": f"t{i}", "kind": k} for i, k in enumerate(kinds)]}
        return next(ln for ln in short_summary(s, 60) if ln.startswith("  uplink"))

    assert line(["image"]) == "  uplink 929 kB: 92.9% of the raw frames as JPEG (1.00 MB)"
    window = line(["window"])
    assert "JPEG" not in window and "float16" in window and "92.9% of the raw windows as captured" in window
    both = line(["image", "window"])
    assert "92.9% of the raw samples" in both and "frames as JPEG, windows as captured" in both
    assert all(len(ln) <= 100 for ln in (window, both))
