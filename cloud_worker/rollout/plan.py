"""A release plan from the worker's `rollout` settings: stage strings to stages, knobs to a ReleasePlan."""

from __future__ import annotations

from typing import Any

from shared.model.groups import check_group
from shared.protocol.schemas import ReleasePlan, Stage


def parse_stage(text: str) -> Stage:
    """'20%', 'site:garage' or 'site:garage+20%' (a device in the group or below the share is in)."""
    share: float | None = None
    groups: list[str] = []
    for part in (p.strip() for p in str(text).split("+")):
        if part.endswith("%"):
            try:
                value = float(part[:-1])
            except ValueError:
                raise ValueError(f"stage {text!r}: {part!r} is not a percentage") from None
            if not 0.0 <= value <= 100.0 or share is not None:
                raise ValueError(f"stage {text!r}: one share within 0..100% at most")
            share = value
        elif part.replace(".", "", 1).isdigit():
            raise ValueError(f"stage {text!r}: a share of the fleet needs a '%' ({part}%)")
        else:
            groups.append(check_group(part))
    if share is None and not groups:
        raise ValueError(f"stage {text!r} names no share and no group")
    return Stage(share=share, groups=groups)


def everyone(stage: Stage) -> bool:
    return stage.share is not None and stage.share >= 100.0


def plan_from(settings: Any) -> ReleasePlan:
    """The ReleasePlan a new release takes from the worker's RolloutSettings."""
    return ReleasePlan(stages=[parse_stage(s) for s in settings.stages], metric=settings.metric,
                       margin=settings.margin, alpha=settings.alpha, min_samples=settings.min_samples,
                       min_labels=settings.min_labels, min_stage_s=settings.min_stage_s,
                       max_stage_s=settings.max_stage_s, max_escalation_increase=settings.max_escalation_increase,
                       max_latency_ratio=settings.max_latency_ratio,
                       max_error_rate_increase=settings.max_error_rate_increase,
                       max_swap_failures=settings.max_swap_failures)
