"""The first checks of a signed JSON message (manifest, release, rollout command), in one place.

Before a signature can be checked the payload must be a JSON object of a sane size: empty (a cleared
retained topic), oversized, not JSON, or not an object are refused with the same stable reasons
wherever they arrive; the caller names its own error type, so its counters stay its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.protocol import strictjson


def json_object(raw: bytes, *, max_bytes: int, what: str, error: Callable[[str, str], Exception]) -> dict[str, Any]:
    """The parsed object, or ``error(reason, detail)`` raised: empty, oversized or not_json."""
    if not raw:
        raise error("empty", f"empty {what} (topic cleared)")
    if len(raw) > max_bytes:
        raise error("oversized", f"{what} of {len(raw)} B")
    try:
        obj = strictjson.loads(raw)
    except strictjson.JsonError as exc:
        raise error("not_json", str(exc)[:200]) from None
    if not isinstance(obj, dict):
        raise error("not_json", f"{what} is not a JSON object")
    return obj
