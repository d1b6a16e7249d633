"""The uncertainty policies, pure numpy: what makes a sample *uncertain*, and the budget rule.

Both sides apply them: the agent to decide what to escalate (edge_agent/decide.py), the cloud
worker to score the joint decision on its holdout exactly as agents make it
(cloud_worker/learning/scoring.py). They live here so that neither role imports the other.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np


class Policy(Protocol):
    name: str
    threshold: float

    def uncertain(self, probs: np.ndarray) -> bool: ...

    def score(self, probs: np.ndarray) -> float:
        """How uncertain, higher is more; what a budget ranks samples by."""
        ...


@dataclass
class MaxProb:
    threshold: float
    name: str = "max_prob"

    def uncertain(self, probs: np.ndarray) -> bool:
        return float(np.max(probs)) < self.threshold

    def score(self, probs: np.ndarray) -> float:
        return 1.0 - float(np.max(probs))


@dataclass
class Margin:
    threshold: float
    name: str = "margin"

    def uncertain(self, probs: np.ndarray) -> bool:
        if probs.shape[-1] < 2:
            return False
        top2 = np.partition(probs, -2)[-2:]
        return float(top2[1] - top2[0]) < self.threshold

    def score(self, probs: np.ndarray) -> float:
        if probs.shape[-1] < 2:
            return 0.0
        top2 = np.partition(probs, -2)[-2:]
        return 1.0 - float(top2[1] - top2[0])


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

    def score(self, probs: np.ndarray) -> float:
        return normalised_entropy(probs)


def budget_threshold(scores: np.ndarray, budget: float) -> float:
    """The uncertainty score above which the most uncertain ``budget`` fraction of ``scores`` lies."""
    if len(scores) == 0 or budget >= 1.0:
        return -math.inf
    return float(np.quantile(scores, 1.0 - budget))


POLICIES = {"max_prob": MaxProb, "margin": Margin, "entropy": Entropy}


def policy_of(name: str, threshold: float) -> Policy:
    return POLICIES[name](threshold=float(threshold))
