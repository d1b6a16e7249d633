"""The scoreboard's pure parts: drift phases and their recovery, and which targets a task's spec applies."""

from __future__ import annotations

from lepton_tasks.spec import TargetsCfg
from lepton_views.scoreboard import build, drift_recovery, end_row, markdown


def test_each_drift_phase_of_a_looped_stream_is_judged_on_its_own():
    tl = []
    t = 0.0
    for n, acc, drift in [(300, 0.9, False), (400, 0.3, True), (300, 0.9, False), (200, 0.3, True), (300, 0.95, True)]:
        k = int(round(acc * 10))
        for i in range(n):
            tl.append((t, int(i % 10 < k), drift))
            t += 0.1
    d = drift_recovery(tl, label_times=[5.0 * i for i in range(100)])
    first, second = d["phases"]
    assert d["accuracy_before"] == first["accuracy_before"] == 0.9
    assert first["recovered"] is False and first["best_window"] == 0.3
    assert second["recovered"] is True and second["best_window"] >= 0.9
    assert second["seconds_to_recover"] > 20 and second["labels_to_recover"] > 0


def test_targets_come_from_the_spec_and_say_which_apply():
    versions = {1: {"holdout_edge_acc": 0.9, "holdout_cloud_acc": 0.95, "holdout_joint_acc": 0.945,
                    "holdout_escalated": 0.1, "holdout_cloud_f1": 0.7}}
    b = build("t", "window", versions, {"pred": 200.0}, 100.0, None,
              TargetsCfg(cloud_accuracy=0.96, cloud_macro_f1=0.66, cloud_over_edge=0.03))
    t = b["targets"]
    assert (t["cloud_accuracy"]["met"], t["cloud_macro_f1"]["met"], t["cloud_over_edge"]["met"]) == (False, True, True)
    assert t["joint_vs_cloud"]["met"] and t["edge_within"]["met"] is False  # 5 points apart
    assert "uplink" not in t  # a window task: none by default
    img = build("c", "image", versions, {"hard": 2000.0, "pred": 500.0}, 26000.0, None, TargetsCfg())
    assert img["targets"]["uplink"]["met"] is True and "cloud_accuracy" not in img["targets"]
    off = build("d", "image", versions, {"pred": 500.0}, 1000.0, None, TargetsCfg(uplink_reduction=0))
    assert "uplink" not in off["targets"]
    assert "| t | cloud holdout accuracy >= 0.960 (last version) | **no** | v1: cloud 0.950 |" in markdown([b])


def test_the_targets_judge_the_state_the_run_ended_in():
    # The last edge version went out with an older cloud; the worker's last status has the cloud as it is now.
    versions = {3: {"holdout_edge_acc": 0.915, "holdout_cloud_acc": 0.910, "holdout_joint_acc": 0.93,
                    "holdout_escalated": 0.15}}
    gauges = {"t.version": 3.0, "t.cloud_generation": 28.0, "t.holdout.edge_acc": 0.915, "t.holdout.cloud_acc": 0.937,
              "t.holdout.joint_acc": 0.935, "t.holdout.escalated": 0.15, "t.holdout.cloud_macro_f1": 0.93}
    end = end_row(gauges, "t")
    b = build("t", "window", versions, {"pred": 1.0}, None, None, TargetsCfg(cloud_accuracy=0.93), end)
    assert b["targets"]["cloud_accuracy"] == {**b["targets"]["cloud_accuracy"], "met": True,
                                              "value": "v3 + cloud 28: cloud 0.937"}
    assert "| end: v3, cloud 28 |" in markdown([b])
    assert end_row({"t.version": 1.0}, "t") is None  # no cloud yet: the versions decide
