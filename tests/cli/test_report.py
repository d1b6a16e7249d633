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
from lepton_views.report import render, windowed_ratio
from lepton_views.svgplot import nice_ticks
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


def test_a_version_line_is_dotted_while_few_and_ends_with_its_last_sample():
    from lepton_views.report import version_accuracy

    total = [0, 5, 20, 60, 110, 150, 150, 152, 152]
    correct = [0, 5, 18, 54, 99, 135, 135, 136, 136]
    solid, dotted = version_accuracy([float(c) for c in correct], [float(n) for n in total], k=100, min_n=10)
    assert solid[:4] == [None] * 4 and dotted[:2] == [None, None]
    assert dotted[2] == 18 / 20 and dotted[3] == 54 / 60
    assert solid[4] == (99 - 5) / (110 - 5) and dotted[4] == solid[4]  # the dotted start joins the line
    # the window slides over about the last 100 samples, so the tail holds 132 samples, not 2
    assert solid[7] == (136 - 18) / (152 - 20)
    assert solid[8] is None and dotted[8] is None  # after the version's last sample: nothing


def summary_with(versions: dict[str, list[int]], published: list[int], board: list[dict]) -> dict:
    """A minimal `lepton up` summary: cumulative [correct, n] per version and sample point."""
    pts = []
    for i in range(len(next(iter(versions.values())))):
        cells = {v: [int(0.9 * n[i]), n[i]] for v, n in versions.items() if n[i]}
        pts.append({"ts": 100.0 + 2 * i, "edge": {"digits": cells}, "joint": {"digits": cells},
                    "cloud": {"digits": {v: c for v, c in cells.items() if v == "1"}}, "preds": 0, "escalated": 0})
    return {"timeline": {"t0": 100.0, "sample_every_s": 2.0, "points": pts},
            "events": {"published": [{"ts": 100.0 + v, "task": "digits", "version": v, "accuracy": 0.9}
                                     for v in published]},
            "scoreboard": [{"task": "digits", "versions": board, "targets": {}}]}


def test_a_version_without_a_line_says_why():
    from lepton_views.report import accuracy_chart

    s = summary_with({"1": [0, 40, 80, 120, 160], "2": [0, 0, 0, 2, 3]}, [1, 2, 3],
                     [{"version": 2, "cloud_deferred": True, "field_escalation_ratio": 0.05},
                      {"version": 3, "cloud_deferred": False, "field_escalation_ratio": 0.0}])
    pts = s["timeline"]["points"]
    edge, notes = accuracy_chart(pts, 100.0, "edge", "edge-only", 1, s)
    assert edge.y_range == (0.0, 1.0)
    assert [x.label for x in edge.series] == ["v1", "v1"]  # v2 has no line and no legend entry ...
    assert notes == ["v2: 3 samples only (a point needs 10)", "v3: no scored samples"]  # ... but a note
    _, notes = accuracy_chart(pts, 100.0, "cloud", "cloud answers", 1, s)
    assert notes == ["v2: no cloud answers: its replies deferred to the edge (the cloud was no better there)",
                     "v3: no escalations"]
    assert "v3: no escalations" in render(s)


def test_the_targets_and_their_verdicts_are_in_the_report_whatever_they_are():
    s = summary_with({"1": [0, 40, 80, 120, 160]}, [1], [{"version": 1}])
    s["scoreboard"][0]["targets"] = {
        "joint_vs_cloud": {"met": True, "value": "joint 0.958 vs cloud 0.942"},
        "a_target_added_later": {"met": False, "value": "0.5 vs 0.6", "applies_to": "sensor tasks"},
        "not_judged": {"met": None, "value": "too few samples"}}
    html = render(s)
    table = html[html.index('<table class="versions targets">'):]
    table = table[:table.index("</table>")]
    assert "joint &gt;= cloud - 1 point" in table  # the scoreboard's own description of a known key
    assert re.search(r'a_target_added_later</td><td class="missed">missed</td><td class="what">0\.5 vs 0\.6 '
                     r"<small>\(applies_to: sensor tasks\)</small>", table)
    assert '<td class="met">met</td>' in table and '<td class="na">–</td>' in table
    assert "<b>Holdout</b> is the worker's own score" in html and "<b>Field</b> is what the devices did" in html


def test_a_publication_at_the_end_keeps_its_label_inside_the_picture():
    from lepton_views.svgplot import Chart, Lanes, text_width

    lanes = Lanes("swaps", x_range=(0.0, 60.0), width=1230)
    lanes.span("cam-1", 0.0, 60.0, "v1", "#123456")
    lanes.vmark(59.0, "v7 published")
    lanes.vmark(1.0, "v1 published")
    svg = lanes.render()
    labels = re.findall(r'<text x="([\d.]+)" y="\d+" class="marklabel"( text-anchor="end")?>([^<]+)</text>', svg)
    assert [(a != "", t) for _, a, t in labels] == [(True, "v7 published"), (False, "v1 published")]
    for x, anchor, text in labels:
        left = float(x) - (text_width(text) if anchor else 0)
        assert 0 <= left and left + text_width(text) <= 1230
    ch = Chart("acc", y_range=(0.0, 1.0), x_range=(0.0, 60.0))
    ch.line([0, 60], [0.5, 0.6], "v1", "#123456")
    ch.vmark(60.0, "v12 published")
    x = float(re.search(r'<text x="([\d.]+)" y="\d+" class="marklabel"', ch.render()).group(1))
    assert x + text_width("v12") / 2 <= ch.width
