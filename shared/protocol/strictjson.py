"""JSON parsing for bytes that came off the network: every failure is one typed error.

``json.loads`` fails in more ways than ``JSONDecodeError``: a number of more than 4,300
digits raises a plain ``ValueError`` (CPython's int conversion limit), nesting past the
interpreter's recursion limit raises ``RecursionError``, and ``NaN``/``Infinity`` literals are
accepted silently. Numbers are held to what Lepton's fields can mean: int64 integers and finite doubles.
A parse that escapes as an untyped exception kills the thread it runs on
and counts as a bug instead of a rejection, so every decoder in Lepton parses through here.

Nesting is capped at :data:`MAX_DEPTH` as well: no Lepton payload is deeper than 4 levels,
and later recursive walks (signing's canonical form, pydantic) must never meet a structure
near the recursion limit.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 32
_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")


class JsonError(ValueError):
    """Not acceptable JSON; ``reason`` is the counter key the callers already use."""

    reason = "not_json"


_INT64 = 1 << 63


def _no_constants(name: str) -> Any:
    raise JsonError(f"non-finite number {name} is not JSON")


def _int(text: str) -> int:
    # No Lepton field needs more than int64; refusing early also skips converting 5,000 digits.
    if len(text) > 20:
        raise JsonError(f"integer of {len(text)} digits is out of range")
    v = int(text)
    if not -_INT64 <= v < _INT64:
        raise JsonError("integer out of the int64 range")
    return v


def _float(text: str) -> float:
    if len(text) > 64:
        raise JsonError(f"number of {len(text)} characters")
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise JsonError(f"number {text[:20]} overflows a double")
    return v


def loads(data: bytes | bytearray | memoryview | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse ``data`` or raise :class:`JsonError` (never anything else)."""
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    try:
        obj = json.loads(data, parse_constant=_no_constants, parse_int=_int, parse_float=_float)
    except JsonError:
        raise
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError, UnicodeDecodeError, int digits
        raise JsonError(f"not JSON: {str(exc)[:200]}") from None
    # Cheap bound first: a payload with fewer brackets than the limit cannot nest deeper than it.
    opens = data.count(b"[") + data.count(b"{") if isinstance(data, bytes) else data.count("[") + data.count("{")
    if opens > max_depth and _depth(obj) > max_depth:
        raise JsonError(f"JSON nested deeper than {max_depth} levels")
    # A lone surrogate escape parses into a str that cannot be encoded again: it would fail
    # later, in a log line, a database or a reply. Only escapes can make one, so look only then.
    text = data.decode("utf-8", "replace") if isinstance(data, bytes) else data
    if _SURROGATE.search(text) and not _encodable(obj):
        raise JsonError("lone UTF-16 surrogate in a string")
    return obj


def _encodable(obj: Any) -> bool:
    stack = [obj]
    while stack:
        o = stack.pop()
        if isinstance(o, str):
            try:
                o.encode("utf-8")
            except UnicodeEncodeError:
                return False
        elif isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, list):
            stack.extend(o)
    return True


def _depth(obj: Any) -> int:
    """Nesting depth of containers, iteratively (no recursion on hostile input)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        o, d = stack.pop()
        if isinstance(o, dict):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in o.values() if isinstance(v, (dict, list)))
        elif isinstance(o, list):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in o if isinstance(v, (dict, list)))
    return deepest
