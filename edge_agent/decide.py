"""The per-sample decision, pure: act locally on confident samples, escalate uncertain ones.

A policy says whether a probability vector is *uncertain*; the decider adds a small audit
rate (confident samples escalated anyway, so drift shows up in the cloud's answers) and a
token bucket so a burst of hard samples cannot flood the uplink.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np


class Policy(Protocol):
    name: str
    threshold: float

    def uncertain(self, probs: np.ndarray) -> bool: ...


@dataclass
class MaxProb:
    threshold: float
    name: str = "max_prob"

    def uncertain(self, probs: np.ndarray) -> bool:
        return float(np.max(probs)) < self.threshold


@dataclass
class Margin:
    threshold: float
    name: str = "margin"

    def uncertain(self, probs: np.ndarray) -> bool:
        if probs.shape[-1] < 2:
            return False
        top2 = np.partition(probs, -2)[-2:]
        return float(top2[1] - top2[0]) < self.threshold


def normalised_entropy(probs: np.ndarray) -> float:
    """Entropy / log(C): 0 for a one-hot vector, 1 for the uniform distribution."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1.0)
    p = p / p.sum()
    c = p.shape[-1]
    return float(-(p * np.log(p)).sum() / math.log(c)) if c > 1 else 0.0


@dataclass
class Entropy:
    threshold: float
    name: str = "entropy"

    def uncertain(self, probs: np.ndarray) -> bool:
        return normalised_entropy(probs) > self.threshold


def make_policy(cfg) -> Policy:
    """From a config policy (MaxProbPolicy / MarginPolicy / EntropyPolicy)."""
    kinds = {"max_prob": MaxProb, "margin": Margin, "entropy": Entropy}
    return kinds[cfg.type](threshold=float(cfg.threshold))


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
                 seed: int = 0) -> None:
        self.policy = policy
        self.audit_rate = float(audit_rate)
        self.bucket = bucket
        self._rng = random.Random(seed)

    def decide(self, probs: np.ndarray) -> Decision:
        probs = np.asarray(probs).reshape(-1)
        label = int(np.argmax(probs))
        conf = float(probs[label])
        if self.policy.uncertain(probs):
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
