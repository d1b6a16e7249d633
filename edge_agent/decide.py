"""The per-sample decision, pure: act locally on confident samples, escalate uncertain ones.

A policy says whether a probability vector is *uncertain*; the decider adds a small audit
rate (confident samples escalated anyway, so drift shows up in the cloud's answers), an
optional escalation *budget* (escalate only the most uncertain fraction of recent samples, so
the uplink and the cloud see a bounded share whatever the model's calibration), and a token
bucket so a burst of hard samples cannot flood the uplink. The cloud worker applies the same
rule (``budget_threshold``) to score the joint decision on its holdout.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np

from shared.model.policy import (
    POLICIES,
    Entropy,
    Margin,
    MaxProb,
    Policy,
    budget_threshold,
    normalised_entropy,
    policy_of,
)

__all__ = ["POLICIES", "Budget", "Decider", "Decision", "Entropy", "Margin", "MaxProb", "Policy", "TokenBucket",
           "budget_threshold", "make_policy", "normalised_entropy", "policy_of"]


class Budget:
    """Rolling window of uncertainty scores: a sample escalates only among the top ``fraction``."""

    def __init__(self, fraction: float, window: int = 500, warmup: int = 50) -> None:
        self.fraction = float(fraction)
        self._scores: deque[float] = deque(maxlen=window)
        self._warmup = warmup

    def admits(self, score: float) -> bool:
        self._scores.append(score)
        if len(self._scores) < self._warmup:
            return True  # too few samples to rank yet
        return score >= budget_threshold(np.fromiter(self._scores, np.float64), self.fraction)


def make_policy(cfg) -> Policy:
    """From a config policy (MaxProbPolicy / MarginPolicy / EntropyPolicy)."""
    return policy_of(cfg.type, cfg.threshold)


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved; ``take()`` spends one if there is one."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._t = clock()
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._t) * self.rate)
            self._t = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


Reason = Literal["confident", "uncertain", "audit", "rate_limited"]


@dataclass(frozen=True, slots=True)
class Decision:
    label: int
    confidence: float
    escalate: bool
    reason: Reason


class Decider:
    def __init__(self, policy: Policy, *, audit_rate: float = 0.0, bucket: TokenBucket | None = None,
                 seed: int = 0, budget: Budget | None = None) -> None:
        self.policy = policy
        self.audit_rate = float(audit_rate)
        self.bucket = bucket
        self.budget = budget
        self._rng = random.Random(seed)

    def decide(self, probs: np.ndarray) -> Decision:
        probs = np.asarray(probs).reshape(-1)
        label = int(np.argmax(probs))
        conf = float(probs[label])
        ranked = self.budget is None or self.budget.admits(self.policy.score(probs))
        if self.policy.uncertain(probs) and ranked:
            reason: Reason = "uncertain"
        elif self.audit_rate > 0 and self._rng.random() < self.audit_rate:
            reason = "audit"
        else:
            return Decision(label, conf, False, "confident")
        if self.bucket is not None and not self.bucket.take():
            return Decision(label, conf, False, "rate_limited")
        return Decision(label, conf, True, reason)

    def set_threshold(self, value: float) -> None:
        if not (0.0 <= value <= 1.0):
            raise ValueError(f"threshold must be within [0, 1], got {value}")
        self.policy.threshold = float(value)

    def set_audit_rate(self, value: float) -> None:
        if not (0.0 <= value <= 1.0):
            raise ValueError(f"audit_rate must be within [0, 1], got {value}")
        self.audit_rate = float(value)
