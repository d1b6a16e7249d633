"""The raw-sample options bench scores each way of moving samples by one accounting: the extremes of
"one in N" and "on request" must equal "every escalation" and "features only", byte for byte."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_raw_options as b  # noqa: E402


def _escalations(n: int = 40) -> b.Escalations:
    rng = np.random.default_rng(3)
    return b.Escalations(cloud_ok=rng.random(n) < 0.9, feat_ok=rng.random(n) < 0.6, feat_conf=rng.random(n),
                         size_feat=rng.integers(600, 700, n), size_raw=rng.integers(9000, 15000, n))


def test_the_extremes_of_every_option_meet():
    e = _escalations()
    rows = {r["option"]: r for r in b.options(e, 200, 500, 1000, every=(1,), taus=(0.0, 1.01))}
    every, feats = rows["every escalation"], rows["features only (no sample)"]
    assert {k: v for k, v in rows["one in 1"].items() if k != "option"} == \
        {k: v for k, v in every.items() if k != "option"}
    never = rows["on request (features below 0.0)"]
    assert {k: v for k, v in never.items() if k != "option"} == {k: v for k, v in feats.items() if k != "option"}
    always = rows["on request (features below 1.01)"]
    assert always["escalated_acc"] == every["escalated_acc"] and always["second_round_trip"] == 1.0
    assert always["bytes_per_escalation"] == round(float(np.mean(e.size_feat + 200 + e.size_raw)))
    assert every["bytes_per_escalation"] == round(float(np.mean(e.size_raw)))
    assert every["escalated_acc"] == round(float(e.cloud_ok.mean()), 4)
    assert every["joint_acc"] == round((500 + int(e.cloud_ok.sum())) / 1000, 4)
    assert every["seen_by_a_person"] == 1.0 and feats["seen_by_a_person"] == 0.0


def test_one_in_n_sends_every_nth_sample_and_on_request_asks_below_its_threshold():
    e = _escalations()
    rows = {r["option"]: r for r in b.options(e, 200, 0, 40, every=(4,), taus=(0.5,))}
    assert rows["one in 4"]["seen_by_a_person"] == 0.25
    ask = e.feat_conf < 0.5
    ok = np.where(ask, e.cloud_ok, e.feat_ok)
    assert rows["on request (features below 0.5)"]["escalated_acc"] == round(float(ok.mean()), 4)
    assert rows["on request (features below 0.5)"]["second_round_trip"] == round(float(ask.mean()), 3)


def test_an_agent_escalates_below_its_threshold_within_its_budget_most_uncertain_first():
    conf = np.array([0.95, 0.2, 0.85, 0.5, 0.99, 0.1, 0.7, 0.92, 0.3, 0.88])
    assert b._escalated(conf, 0.9, 1.0).tolist() == [1, 2, 3, 5, 6, 8, 9]
    assert b._escalated(conf, 0.9, 0.3).tolist() == [1, 5, 8]


def test_the_chart_draws_each_family_and_its_own_styles():
    e = _escalations()
    run = {"seed": 0, "options": [{"option": "edge alone (no cloud)", "escalated_acc": 0.5, "joint_acc": 0.8,
                                   "bytes_per_escalation": 650, "second_round_trip": 0.0, "seen_by_a_person": 0.0},
                                  *b.options(e, 200, 500, 1000)]}
    svg = b.chart([run, {**run, "seed": 1}])
    assert svg.startswith("<svg") and "<style>" in svg
    for label in ("one in N", "on request", "every escalation", "edge alone"):
        assert f">{label}</text>" in svg, label
    assert svg.count("<polyline") == 4  # two families, two seeds
