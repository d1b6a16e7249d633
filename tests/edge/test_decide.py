import numpy as np
import pytest

from edge_agent.config import EntropyPolicy, MarginPolicy, MaxProbPolicy
from edge_agent.decide import Decider, Entropy, Margin, MaxProb, TokenBucket, make_policy, normalised_entropy

CONFIDENT = np.array([0.9, 0.05, 0.05], np.float32)
SPLIT = np.array([0.45, 0.44, 0.11], np.float32)
UNIFORM = np.full(4, 0.25, np.float32)


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.mark.parametrize("policy, probs, uncertain", [
    (MaxProb(0.8), CONFIDENT, False), (MaxProb(0.8), SPLIT, True), (MaxProb(0.89), CONFIDENT, False),
    (MaxProb(0.91), CONFIDENT, True),
    (Margin(0.3), CONFIDENT, False), (Margin(0.3), SPLIT, True), (Margin(0.0), SPLIT, False),
    (Entropy(0.5), CONFIDENT, False), (Entropy(0.5), UNIFORM, True), (Entropy(0.99), SPLIT, False),
])
def test_policies_separate_confident_from_uncertain(policy, probs, uncertain):
    assert policy.uncertain(probs) is uncertain


def test_normalised_entropy_spans_zero_to_one():
    assert normalised_entropy(np.array([1.0, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-6)
    assert normalised_entropy(UNIFORM) == pytest.approx(1.0)


def test_make_policy_from_config():
    assert isinstance(make_policy(MaxProbPolicy(type="max_prob", threshold=0.7)), MaxProb)
    assert isinstance(make_policy(MarginPolicy(type="margin")), Margin)
    p = make_policy(EntropyPolicy(type="entropy", threshold=0.25))
    assert isinstance(p, Entropy) and p.threshold == 0.25


def test_decider_escalates_uncertain_and_acts_on_confident():
    d = Decider(MaxProb(0.8))
    a, b = d.decide(CONFIDENT), d.decide(SPLIT)
    assert (a.escalate, a.reason, a.label) == (False, "confident", 0)
    assert (b.escalate, b.reason, b.label) == (True, "uncertain", 0)
    assert b.confidence == pytest.approx(0.45)


def test_audit_rate_escalates_that_fraction_of_confident_samples():
    d = Decider(MaxProb(0.5), audit_rate=0.1, seed=3)
    decisions = [d.decide(CONFIDENT) for _ in range(5000)]
    audits = sum(x.reason == "audit" for x in decisions)
    assert all(x.escalate for x in decisions if x.reason == "audit")
    assert 350 <= audits <= 650


def test_audit_rate_zero_never_escalates_confident():
    d = Decider(MaxProb(0.5), audit_rate=0.0)
    assert not any(d.decide(CONFIDENT).escalate for _ in range(1000))


def test_token_bucket_limits_escalations_to_burst_then_rate():
    clock = FakeClock()
    d = Decider(MaxProb(0.8), bucket=TokenBucket(rate=2.0, burst=3, clock=clock))
    first = [d.decide(SPLIT) for _ in range(5)]
    assert [x.escalate for x in first] == [True, True, True, False, False]
    assert first[-1].reason == "rate_limited"
    clock.t = 1.0  # two tokens refilled
    again = [d.decide(SPLIT).escalate for _ in range(3)]
    assert again == [True, True, False]


def test_threshold_changes_apply_and_bad_values_are_refused():
    d = Decider(MaxProb(0.8))
    d.set_threshold(0.4)
    assert not d.decide(SPLIT).escalate
    with pytest.raises(ValueError):
        d.set_threshold(1.5)
    with pytest.raises(ValueError):
        d.set_audit_rate(-0.1)
    assert d.policy.threshold == 0.4


def test_budget_escalates_only_the_most_uncertain_share():
    from edge_agent.decide import Budget

    rng = np.random.default_rng(1)
    d = Decider(MaxProb(0.99), budget=Budget(0.1, window=200, warmup=20))
    decisions = [d.decide(rng.dirichlet([1, 1, 1])) for _ in range(2000)]
    share = np.mean([x.escalate for x in decisions[200:]])
    assert 0.07 <= share <= 0.13, share  # without the budget nearly all would go (threshold 0.99)
    assert all(x.reason in ("confident", "uncertain") for x in decisions)
