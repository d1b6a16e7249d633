"""`lepton report` / `lepton up --report`: one self-contained HTML file, checked in headless Chromium.

The summary is a real one: recorded from `lepton up --duration 120 --summary` (2 agents, digits),
so the plots show what a run shows; tests/e2e/test_lepton_up.py renders the report of a fresh run.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import pytest

from lepton_cli.main import main as lepton
from lepton_cli.report import render, windowed_ratio
from lepton_cli.svgplot import nice_ticks
from tests.cli.chromium import open_page

RECORDED = Path(__file__).with_name("data") / "up_summary.json"
PLOTS = ("accuracy-edge", "accuracy-cloud", "accuracy-joint", "escalation", "uplink", "hub-queues", "hub-drops",
         "swaps")


@pytest.fixture(scope="module")
def summary() -> dict:
    return json.loads(RECORDED.read_text())


def plots_in(html: str) -> dict[str, int]:
    """figure id -> number of drawn series in it."""
    out = {}
    for fid, body in re.findall(r'<figure class="plot" id="([^"]+)">(.*?)</figure>', html, re.S):
        out[fid] = len(re.findall(r'class="series', body))
    return out


def test_the_report_is_one_self_contained_file(summary):
    html = render(summary)
    assert "<script" not in html.lower() and "<link" not in html.lower()
    assert not re.search(r"\b(src|href)\s*=", html), "nothing may be loaded from anywhere"
    assert set(re.findall(r"https?://[^\s\"'<>]+", html)) <= {"http://www.w3.org/2000/svg"}  # a namespace name
    plots = plots_in(html)
    assert list(plots) == list(PLOTS)
    assert all(n > 0 for n in plots.values()), plots
    # the per-version table carries the gate's holdout accuracy of every published version
    published = [f"v{e['version']}" for e in summary["events"]["published"]]
    assert published == ["v1", "v2", "v3", "v4", "v5"]
    assert re.findall(r"<td>(v\d+)</td>", html) == published


def test_the_report_opens_in_chromium_without_errors_and_draws_every_plot(summary, tmp_path):
    html = tmp_path / "run.html"
    assert lepton(["report", str(RECORDED), "-o", str(html)]) == 0
    page = open_page(html, tmp_path / "run.png")
    assert page.console == [], page.console
    rendered = plots_in(page.dom)
    assert list(rendered) == list(PLOTS) and all(n > 0 for n in rendered.values()), rendered
    img = cv2.imread(str(page.png))
    assert img is not None and img.shape[1] == 1300
    assert float(img.std()) > 20, "the screenshot is blank"
    # colour where the plots are: series lines and areas drew something other than grey
    b, g, r = (img[..., i].astype(int) for i in range(3))
    assert int(((abs(r - g) > 60) | (abs(g - b) > 60)).sum()) > 5000


def test_a_summary_without_a_time_series_is_refused_in_one_line(tmp_path, capsys):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"accuracy_joint": 0.9}))
    assert lepton(["report", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "has no `timeline`" in err and "lepton up --summary" in err


def test_windowed_ratio_uses_the_recent_samples_only():
    correct = [0, 10, 20, 29, 29]
    total = [0, 10, 20, 30, 31]
    assert windowed_ratio(correct, total, 1, min_den=5) == [None, 1.0, 1.0, 0.9, None]
    assert windowed_ratio(correct, total, 2, min_den=5) == [None, 1.0, 1.0, 19 / 20, 9 / 11]


def test_ticks_cover_the_data():
    assert nice_ticks(0, 2833) == [0, 1000, 2000, 3000]
    assert nice_ticks(0.7, 1.0) == [0.7, 0.8, 0.9, 1.0]


def test_the_console_check_sees_a_page_error(tmp_path):
    # The check above must be able to fail: a page whose script throws is reported.
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFunction();</script></body></html>")
    page = open_page(bad, tmp_path / "bad.png", height=300)
    assert any("undefinedFunction is not defined" in line for line in page.console), page.console
