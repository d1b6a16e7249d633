"""What the edge-cloud split is worth, on the holdout: edge-only, cloud-only and joint, pure numpy.

The joint decision is the agents' own rule (shared/model/policy.py): a sample goes to the cloud
when the task's policy calls it uncertain and, with a budget, it is among the most uncertain
``budget`` fraction; the cloud's answer then replaces the edge's. On the escalated samples the
worker compares the two models, which is how it knows whether the cloud is worth asking: when it
is not, it tells the agents to keep their own decisions (``Reply.defer``), so joint accuracy
never falls below edge-only because of a weaker cloud model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared.model.policy import budget_threshold, policy_of


def macro_f1(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    """Mean F1 over the classes present in ``y`` or ``pred`` (each class counts the same, rare ones too)."""
    f1s = []
    for c in range(n_classes):
        tp = int(((pred == c) & (y == c)).sum())
        fp = int(((pred == c) & (y != c)).sum())
        fn = int(((pred != c) & (y == c)).sum())
        if tp + fp + fn:
            f1s.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(f1s)) if f1s else 0.0


@dataclass(frozen=True)
class Policy:
    type: str = "max_prob"
    threshold: float = 0.8
    budget: float | None = None


def escalated(probs: np.ndarray, policy: Policy) -> np.ndarray:
    """Which rows an agent with this policy would escalate (as uncertain; audits left out)."""
    pol = policy_of(policy.type, policy.threshold)
    scores = np.array([pol.score(p) for p in probs])
    mask = np.array([pol.uncertain(p) for p in probs], bool)
    if policy.budget is not None:
        mask &= scores >= budget_threshold(scores, policy.budget)
    return mask


def split_worth(edge_probs: np.ndarray, cloud_probs: np.ndarray, y: np.ndarray, policy: Policy) -> dict[str, float]:
    """Holdout metrics of edge-only, cloud-only and joint decisions, and whether to defer to the edge."""
    n = len(y)
    c = edge_probs.shape[1]
    e, k = edge_probs.argmax(1), cloud_probs.argmax(1)
    esc = escalated(edge_probs, policy)
    edge_esc = float((e[esc] == y[esc]).mean()) if esc.any() else 0.0
    cloud_esc = float((k[esc] == y[esc]).mean()) if esc.any() else 0.0
    defer = bool(cloud_esc <= edge_esc)  # the cloud adds nothing where it would be asked
    joint = np.where(esc & (not defer), k, e)
    return {
        "edge_acc": float((e == y).mean()) if n else 0.0, "edge_macro_f1": macro_f1(y, e, c),
        "cloud_acc": float((k == y).mean()) if n else 0.0, "cloud_macro_f1": macro_f1(y, k, c),
        "joint_acc": float((joint == y).mean()) if n else 0.0, "joint_macro_f1": macro_f1(y, joint, c),
        "escalated": float(esc.mean()) if n else 0.0,
        "escalated_edge_acc": edge_esc, "escalated_cloud_acc": cloud_esc, "defer": float(defer),
    }
