"""Staged rollouts in the fleet view: the monitor's line and token, the summary's section, the report's table."""

from __future__ import annotations

import json
from pathlib import Path

from rich.console import Console

from lepton_cli.monitor import status_line, table
from lepton_views.fleetview import FleetStats
from lepton_views.report import render
from shared.protocol import schemas
from shared.protocol.topics import Topics
from shared.protocol.wire import decode
from tests.shared.samples import figures_sample, release_sample

T = Topics()
RECORDED = Path(__file__).with_name("data") / "up_summary.json"


def feed(stats: FleetStats, topic, msg) -> None:
    stats.feed(decode(T, str(topic), schemas.dumps(msg)))


def test_a_running_release_and_a_decision_show_in_the_monitor_and_the_summary():
    s = FleetStats()
    rel = release_sample(seq=5)
    feed(s, T.release("digits"), rel)
    feed(s, T.cloud_status("w1"), schemas.ServiceStatus(
        service="worker", id="w1", state="online", ts=1.0,
        gauges={"digits.rollout.candidate": 3.0, "digits.rollout.candidate_labelled": 41.0,
                "digits.rollout.candidate_accuracy": 0.5, "digits.rollout.control_labelled": 90.0,
                "digits.rollout.control_accuracy": 0.95, "digits.rollout.lower": -0.6}))
    # Execute / Assert: the running release with the judge's live figures
    line = status_line(s)
    assert line.endswith(" rollout=digits-v3:running:1/3")
    console = Console(width=250, record=True)
    console.print(table(s))
    text = console.export_text()
    assert "rollout: digits-v3 running: v3 on stage 1/3 (ring<26.7), others v2" in text
    assert "candidate acc 0.500 (n=41) vs control 0.950 (n=90), lower bound -0.600 vs -0.02" in text
    # ... then its rollback, an event with figures
    ev = schemas.RolloutEvent(task="digits", release="digits-v3", seq=6, action="rollback", from_version=3,
                              to_version=4, group="ring<26.7 (cam-4)", stage_from=0, stage_to=0,
                              reason="worse than control", figures=figures_sample(), forced=True, ts=2.0)
    feed(s, T.release("digits"), rel.model_copy(update={"seq": 6, "state": "rolled_back", "restored": 4}))
    feed(s, T.release("digits"), rel)  # an older copy (a broker that restored its store) changes nothing
    feed(s, T.rollout_event("digits"), ev)
    ro = s.summary()["rollout"]
    assert (ro["promoted"], ro["rolled_back"]) == (0, 1)
    assert ro["releases"][0]["state"] == "rolled_back" and ro["releases"][0]["restored"] == 4
    e = ro["events"][0]
    assert e["action"] == "rollback" and e["forced"] and e["figures"]["candidate"]["accuracy"] == 0.13
    assert e["figures"]["bounds"] == [-0.9, -0.7] and e["figures"]["control"]["labelled"] == 60
    assert "rollout=" not in status_line(s)
    console = Console(width=250, record=True)
    console.print(table(s))
    assert "last decision: digits-v3 rollback v3->v4: worse than control" in console.export_text()


def test_the_report_has_a_rollout_section_only_when_the_run_had_one():
    summary = json.loads(RECORDED.read_text())
    assert "Staged rollout" not in render(summary)
    s = FleetStats()
    feed(s, T.release("digits"), release_sample(seq=5).model_copy(update={"state": "rolled_back", "restored": 4}))
    feed(s, T.rollout_event("digits"), schemas.RolloutEvent(
        task="digits", release="digits-v3", seq=6, action="rollback", from_version=3, to_version=4,
        group="ring<26.7 (cam-4)", stage_from=0, stage_to=0, reason="worse than control <by far>",
        figures=figures_sample(), forced=True, ts=summary["timeline"]["t0"] + 42))
    summary["rollout"] = s.summary()["rollout"]
    html = render(summary)
    assert "Staged rollout: 0 promoted, 1 rolled back" in html
    assert "<td>42 s</td>" in html and "v3 → v4" in html and "0.130 <small>(n=60)</small>" in html
    assert "[-0.900, -0.700] vs −0.02" in html and "&lt;by far&gt;" in html and "<b>forced</b>" in html
