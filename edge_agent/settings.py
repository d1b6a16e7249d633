"""The agent's decision settings, from three sources in order of precedence.

1. an operator's ``thresholds`` command (kept across model swaps);
2. the agent's own config (``decision.*``);
3. the task's defaults in the serving model's signed manifest (``Manifest.decision``).

What it settles: the escalation policy and threshold, the budget, the audit rate, the token
bucket's rate, and which escalations carry the model input (``raw_every``).
"""

from __future__ import annotations

import logging
from typing import Any

from edge_agent.config import DecisionSettings, MaxProbPolicy
from edge_agent.decide import Budget, Decider, TokenBucket, make_policy, policy_of
from shared.protocol.schemas import DecisionDefaults

log = logging.getLogger(__name__)

COMMANDED = ("threshold", "audit_rate", "rate_limit")


class DecisionControl:
    def __init__(self, cfg: DecisionSettings) -> None:
        self.cfg = cfg
        self.decider = Decider(make_policy(cfg.policy or MaxProbPolicy(type="max_prob")), audit_rate=cfg.audit_rate,
                               bucket=TokenBucket(cfg.rate_limit, cfg.burst), seed=cfg.seed,
                               budget=Budget(cfg.budget) if cfg.budget is not None else None)
        self.raw_every = cfg.raw_every if cfg.raw_every is not None else 1
        self.pinned: dict[str, float] = {}  # what an operator command set
        self._escalations = 0

    def carries_input(self) -> bool:
        """Whether the next escalation carries the model input (one in ``raw_every``)."""
        self._escalations += 1
        return self.raw_every != 0 and self._escalations % self.raw_every == 0

    def from_manifest(self, dd: DecisionDefaults | None) -> None:
        """The task's defaults from a newly served model, for what neither config nor operator set."""
        if dd is None:
            return
        d = self.cfg
        if d.policy is None:
            pinned = self.pinned.get("threshold")
            self.decider.policy = policy_of(dd.policy, dd.threshold if pinned is None else pinned)
        if d.budget is None:
            if dd.budget is None:
                self.decider.budget = None
            elif self.decider.budget is None:
                self.decider.budget = Budget(dd.budget)
            else:  # keep the window of recent scores across a swap: no warm-up again
                self.decider.budget.fraction = dd.budget
        if d.raw_every is None:
            self.raw_every = dd.raw_every

    def command(self, args: dict[str, Any]) -> dict[str, float]:
        """Apply a ``thresholds`` command; ValueError (nothing changed) when any argument is bad."""
        unknown = set(args) - set(COMMANDED)
        if unknown or not args:
            raise ValueError(f"unknown or missing arguments {sorted(unknown)}; known: {sorted(COMMANDED)}")
        vals = {k: float(v) for k, v in args.items()}  # str values raise ValueError here, before any change
        if "threshold" in vals and not 0 <= vals["threshold"] <= 1:
            raise ValueError("threshold must be within [0, 1]")
        if "audit_rate" in vals and not 0 <= vals["audit_rate"] <= 1:
            raise ValueError("audit_rate must be within [0, 1]")
        if "rate_limit" in vals and not vals["rate_limit"] >= 0:
            raise ValueError("rate_limit must be >= 0")
        self.pinned.update(vals)
        if "threshold" in vals:
            self.decider.set_threshold(vals["threshold"])
        if "audit_rate" in vals:
            self.decider.set_audit_rate(vals["audit_rate"])
        if "rate_limit" in vals and self.decider.bucket is not None:
            self.decider.bucket.rate = vals["rate_limit"]
        log.info("decision settings now %s", vals)
        return vals
