"""A release plan from the worker's `rollout` settings: stage strings to stages, knobs to a ReleasePlan."""

from __future__ import annotations

from typing import Any

from shared.model.stages import everyone, parse_stage
from shared.protocol.schemas import ReleasePlan

__all__ = ["everyone", "parse_stage", "plan_from"]


def plan_from(settings: Any) -> ReleasePlan:
    """The ReleasePlan a new release takes from the worker's RolloutSettings."""
    return ReleasePlan(stages=[parse_stage(s) for s in settings.stages], metric=settings.metric,
                       margin=settings.margin, alpha=settings.alpha, min_samples=settings.min_samples,
                       min_labels=settings.min_labels, min_stage_s=settings.min_stage_s,
                       max_stage_s=settings.max_stage_s, max_escalation_increase=settings.max_escalation_increase,
                       max_latency_ratio=settings.max_latency_ratio,
                       max_error_rate_increase=settings.max_error_rate_increase,
                       max_swap_failures=settings.max_swap_failures)
