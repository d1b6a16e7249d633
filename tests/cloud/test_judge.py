"""The rollout decision rule on synthetic counts (cloud_worker/rollout/judge.py): pure, no broker, no torch."""

from __future__ import annotations

import pytest

from cloud_worker.rollout.judge import Arm, judge, newcombe, wilson
from shared.protocol.schemas import ReleasePlan, Stage

PLAN = ReleasePlan(stages=[Stage(share=20), Stage(share=100)], margin=0.03, alpha=0.05, min_samples=100,
                   min_labels=50, min_stage_s=10, max_stage_s=300)


def arm(version: int, labelled: int, correct: int, *, samples: int | None = None, **kw) -> Arm:
    return Arm(version, devices=1, samples=samples if samples is not None else labelled * 3, labelled=labelled,
               correct=correct, **kw)


def test_too_few_labels_is_wait_not_promote_even_with_a_perfect_candidate():
    v = judge(PLAN, arm(2, 49, 49), arm(1, 400, 360), elapsed_s=60)
    assert v.action == "wait"
    assert "too few samples" in v.reason and "candidate 49/50 labelled" in v.reason


def test_too_few_samples_is_wait():
    v = judge(PLAN, arm(2, 60, 60, samples=99), arm(1, 400, 360), elapsed_s=60)
    assert v.action == "wait" and "candidate 99/100 samples" in v.reason


def test_too_few_samples_past_the_time_bound_rolls_back():
    v = judge(PLAN, arm(2, 10, 10), arm(1, 400, 360), elapsed_s=301)
    assert v.action == "rollback" and "not enough evidence within 300s" in v.reason


def test_nothing_is_decided_before_the_minimum_stage_time():
    v = judge(PLAN, arm(2, 1000, 100), arm(1, 1000, 950), elapsed_s=9.9)
    assert v.action == "wait" and "at least 10s" in v.reason


def test_a_clearly_worse_candidate_rolls_back_with_its_figures():
    # label noise: about chance on ten classes, against a good control
    v = judge(PLAN, arm(3, 60, 8), arm(2, 90, 85), elapsed_s=20)
    assert v.action == "rollback" and "worse than control beyond the margin" in v.reason
    f = v.figures
    assert f.candidate.accuracy == pytest.approx(8 / 60) and f.control.accuracy == pytest.approx(85 / 90)
    assert f.upper < -PLAN.margin and f.difference == pytest.approx(8 / 60 - 85 / 90)
    assert "newcombe" in f.test and f.margin == 0.03


def test_an_equally_good_candidate_with_enough_samples_is_promoted():
    v = judge(PLAN, arm(3, 800, 768), arm(2, 1200, 1140), elapsed_s=60)  # 0.96 vs 0.95
    assert v.action == "promote" and v.figures.lower > -PLAN.margin


def test_a_slightly_worse_candidate_within_the_margin_is_promoted_only_with_enough_evidence():
    # 0.94 vs 0.95: within the 0.03 margin, but 60 labels cannot show it; 3000 can
    small = judge(PLAN, arm(3, 60, 56), arm(2, 60, 57), elapsed_s=60)
    large = judge(PLAN, arm(3, 3000, 2820), arm(2, 3000, 2850), elapsed_s=60)
    assert small.action == "wait" and "inconclusive" in small.reason
    assert large.action == "promote"


def test_inconclusive_past_the_time_bound_rolls_back():
    v = judge(PLAN, arm(3, 60, 56), arm(2, 60, 57), elapsed_s=400)
    assert v.action == "rollback" and "not shown to be no worse" in v.reason


def test_a_candidate_devices_cannot_load_rolls_back_at_once():
    v = judge(PLAN, arm(3, 0, 0, samples=0, swap_failures=1), arm(2, 0, 0, samples=0), elapsed_s=1)
    assert v.action == "rollback" and "failed to load v3" in v.reason


@pytest.mark.parametrize("kw, why", [
    (dict(cand=dict(frames=1000, errors=50), ctrl=dict(frames=1000, errors=0)), "error rate"),
    (dict(cand=dict(latency_ms_p50=9.0), ctrl=dict(latency_ms_p50=2.0)), "latency"),
    (dict(cand=dict(escalations=600), ctrl=dict(escalations=100)), "escalation rate"),
])
def test_guard_rails_roll_back_a_candidate_that_is_accurate_but_broken_otherwise(kw, why):
    v = judge(PLAN, arm(3, 1000, 960, samples=2000, **kw["cand"]), arm(2, 1000, 950, samples=2000, **kw["ctrl"]),
              elapsed_s=60)
    assert v.action == "rollback" and why in v.reason


def test_guard_rails_tolerate_noise():
    v = judge(PLAN, arm(3, 1000, 960, samples=2000, frames=2000, errors=1, latency_ms_p50=0.05, escalations=210),
              arm(2, 1000, 950, samples=2000, frames=2000, errors=0, latency_ms_p50=0.04, escalations=200),
              elapsed_s=60)
    assert v.action == "promote", v.reason


def test_cloud_agreement_as_the_metric_counts_escalations():
    plan = PLAN.model_copy(update={"metric": "cloud_agreement"})
    few = judge(plan, arm(3, 0, 0, samples=500, escalations=20, agree=20), arm(2, 0, 0, samples=500, escalations=200,
                                                                              agree=150), elapsed_s=60)
    worse = judge(plan, arm(3, 0, 0, samples=500, escalations=100, agree=20),
                  arm(2, 0, 0, samples=500, escalations=100, agree=80), elapsed_s=60)
    assert few.action == "wait" and "answered escalations" in few.reason
    assert worse.action == "rollback" and "agreement with the cloud" in worse.reason


def test_wilson_and_newcombe_match_published_values():
    # Newcombe (1998), Stat Med 17:873, Table II example (a): 56/70 vs 48/80, 95% interval
    # for the difference by method 10 is 0.0524 to 0.3339.
    # The Wilson interval of 56/70 by hand: centre (0.8 + z^2/140) / (1 + z^2/70) = 0.7844, half-width
    # z * sqrt(0.16/70 + z^2/19600) / (1 + z^2/70) = 0.0925.
    lo1, hi1 = wilson(56, 70, 1.959964)
    assert (round(lo1, 4), round(hi1, 4)) == (0.6918, 0.8770)
    d, lo, hi = newcombe(56, 70, 48, 80, alpha=0.025)
    assert d == pytest.approx(0.2) and round(lo, 4) == 0.0524 and round(hi, 4) == 0.3339


def test_wilson_has_width_at_the_edges_where_wald_has_none():
    lo, hi = wilson(50, 50, 1.645)
    assert hi == pytest.approx(1.0) and 0.9 < lo < 0.96
