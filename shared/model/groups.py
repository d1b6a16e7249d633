"""Device groups and the stable hash ring: which version a release assigns to a device.

Pure and shared by the agent (which version to run), the worker (how many devices a stage
covers, which devices an event names) and the monitor. A device's groups are the ones in its
config plus ``device:<id>``; its ring position is a hash of its id, the same everywhere and
forever, so "the 20 % of the fleet below 20 on the ring" is a reproducible set.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from shared.protocol.schemas import GROUP_RE, Release, Stage

_GROUP = re.compile(GROUP_RE)
_RING_SALT = b"lepton-ring:"


def check_group(name: str) -> str:
    if not isinstance(name, str) or not _GROUP.match(name):
        raise ValueError(f"invalid group {name!r}: 1-64 of [a-z0-9_.:-], starting with a letter or digit")
    return name


def ring_position(device: str) -> float:
    """Where ``device`` sits on the ring, in [0, 100): the first 8 bytes of a salted SHA-256 of its id."""
    digest = hashlib.sha256(_RING_SALT + device.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100.0


def memberships(device: str, groups: Iterable[str]) -> frozenset[str]:
    """The groups a device is in: its configured ones and ``device:<id>``."""
    return frozenset((*groups, f"device:{device}"))


def in_stage(stage: Stage, ring: float, groups: frozenset[str]) -> bool:
    if stage.groups and groups.intersection(stage.groups):
        return True
    threshold = stage.ring_below if stage.ring_below is not None else stage.share
    return threshold is not None and (threshold >= 100.0 or ring < threshold)


def reached(release: Release, ring: float, groups: frozenset[str]) -> bool:
    """Is the device in the current stage of ``release`` or an earlier one (stages accumulate)?"""
    return any(in_stage(s, ring, groups) for s in release.plan.stages[:release.stage + 1])


def pinned(release: Release, groups: frozenset[str]) -> int | None:
    """The version a pin assigns (the first pin that matches), or None."""
    for pin in release.pins:
        if pin.group in groups:
            return pin.version
    return None


def target_version(release: Release, device: str, groups: Iterable[str]) -> int:
    """The version ``release`` assigns to ``device``: a pin first, then the state and the stages."""
    g = memberships(device, groups)
    pin = pinned(release, g)
    if pin is not None:
        return pin
    if release.state == "promoted":
        return release.candidate
    if release.state in ("rolled_back", "aborted"):
        return release.restored or release.control
    return release.candidate if reached(release, ring_position(device), g) else release.control


def resolve_share(share: float, rings: Mapping[str, float], *, keep_control: bool) -> float:
    """A ring threshold that puts round(share % of the known devices) below it (at least one when share > 0,
    at most all but one when a control group must remain), midway between two devices so that a device
    that comes online later falls on one side by its own position. No devices known: the share itself."""
    if share >= 100.0 and not keep_control:
        return 100.0
    pos = sorted(rings.values())
    if not pos:
        return share
    k = max(1 if share > 0 else 0, round(share / 100.0 * len(pos)))
    if keep_control:
        k = min(k, len(pos) - 1)
    if k <= 0:
        return pos[0] / 2.0
    if k >= len(pos):
        return 100.0
    return (pos[k - 1] + pos[k]) / 2.0


def describe(stage: Stage, rings: Mapping[str, float], groups_of: Mapping[str, Iterable[str]]) -> str:
    """The devices of one stage in words: its rule and the known devices it covers."""
    rule = []
    if stage.groups:
        rule.append(" or ".join(stage.groups))
    threshold = stage.ring_below if stage.ring_below is not None else stage.share
    if threshold is not None:
        rule.append("everyone" if threshold >= 100.0 else f"ring<{threshold:.1f}")
    members = sorted(d for d, r in rings.items() if in_stage(stage, r, memberships(d, groups_of.get(d, ()))))
    text = " or ".join(rule) or "nobody"
    if members:
        shown = ", ".join(members[:8]) + (f", +{len(members) - 8}" if len(members) > 8 else "")
        text += f" ({shown})"
    return text[:512]
