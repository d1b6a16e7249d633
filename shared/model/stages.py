"""Rollout stages as people write them: '20%', 'site:garage', 'site:garage+20%'.

Parsed where the worker's config is validated and where a release plan is made, so the syntax lives
beside the groups it names rather than in the rollout code that uses it.
"""

from __future__ import annotations

from shared.model.groups import check_group
from shared.protocol.schemas import Stage


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
