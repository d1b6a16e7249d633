"""Pydantic validation errors rewritten for the person who wrote the config.

Pydantic reports what its validators saw (``Unable to extract tag using discriminator 'type'``,
``Extra inputs are not permitted``, locations with union tags in them). A person needs the key
as written in the file, what would have been right, and the line. One function,
:func:`describe`, turns each error into one such line; every config loader (role configs, task
specs) goes through it so the wording is the same everywhere.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from pydantic import BaseModel
from pydantic.fields import FieldInfo


@dataclass
class Place:
    """What the model expects at one error location."""

    keys: tuple[str, ...]  # the location as keys of the input (union tags dropped)
    fields: dict[str, FieldInfo] | None = None  # the known keys of the table the location is in
    tags: tuple[str, ...] = ()  # allowed values of the discriminator, when the location is a tagged union
    disc: str | None = None  # that discriminator's key
    member_keys: frozenset[str] = frozenset()  # every key some member of that union knows


def _strip(t: Any) -> tuple[Any, str | None]:
    """The type under Annotated/Optional, and a discriminator found on the way."""
    disc = None
    while True:
        origin = typing.get_origin(t)
        if origin is typing.Annotated:
            args = typing.get_args(t)
            for meta in args[1:]:
                if isinstance(meta, FieldInfo) and isinstance(meta.discriminator, str):
                    disc = meta.discriminator
            t = args[0]
            continue
        if origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(t) if a is not type(None)]
            if len(members) == 1:
                t = members[0]
                continue
        return t, disc


def _union_members(t: Any) -> list[type[BaseModel]]:
    return [a for a in typing.get_args(t) if isinstance(a, type) and issubclass(a, BaseModel)]


def _tag_values(member: type[BaseModel], disc: str) -> tuple[str, ...]:
    f = member.model_fields.get(disc)
    if f is None or typing.get_origin(f.annotation) is not Literal:
        return ()
    return tuple(str(v) for v in typing.get_args(f.annotation))


def locate(model: type[BaseModel], loc: tuple[Any, ...]) -> Place:
    """Walk ``loc`` through ``model``'s fields; union tags in it pick the member and are dropped."""
    t: Any = model
    disc: str | None = None
    keys: list[str] = []
    fields: dict[str, FieldInfo] | None = model.model_fields
    for part in loc:
        t, d = _strip(t)
        disc = d or disc
        members = _union_members(t)
        if isinstance(t, type) and issubclass(t, BaseModel):
            fields = t.model_fields
            f = fields.get(str(part))
            if f is None:
                keys.append(str(part))
                return Place(tuple(keys), fields)
            keys.append(str(part))
            t, disc = f.annotation, f.discriminator if isinstance(f.discriminator, str) else None
            continue
        if len(members) > 1 and disc:
            hit = next((m for m in members if str(part) in _tag_values(m, disc)), None)
            if hit is not None:  # pydantic's tag segment: step into that member without a key
                t, disc = hit, None
                continue
        origin = typing.get_origin(t)
        if origin in (list, tuple, set, frozenset):
            args = typing.get_args(t)
            t = args[0] if args else Any
        elif origin is dict:
            t = typing.get_args(t)[1]
        else:
            t = Any
        keys.append(str(part))
        fields = None
    t, d = _strip(t)
    disc = d or disc
    members = _union_members(t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return Place(tuple(keys), t.model_fields)
    if len(members) > 1 and disc:
        tags = tuple(v for m in members for v in _tag_values(m, disc))
        every = frozenset(k for m in members for k in m.model_fields)
        return Place(tuple(keys), fields, tags, disc, every)
    return Place(tuple(keys), fields)


def _at(data: Any, keys: tuple[str, ...]) -> Any:
    node = data
    for k in keys:
        if isinstance(node, dict) and k in node:
            node = node[k]
        elif isinstance(node, list) and k.isdigit() and int(k) < len(node):
            node = node[int(k)]
        else:
            return None
    return node


def _nearest(word: str, known: typing.Iterable[str]) -> str | None:
    """The known key most like ``word``; ties go to the one with the same first letter (prot: port, not root)."""
    scored = [(difflib.SequenceMatcher(None, word, k).ratio(), k[:1] == word[:1], k) for k in known]
    best = max(scored, default=None, key=lambda s: (s[0], s[1]))
    return best[2] if best and best[0] >= 0.7 else None


def key_line(text: str, keys: tuple[str, ...]) -> int | None:
    """The line (1-based) where ``keys`` is written in TOML ``text``: ``a.b = ``, ``b = `` under ``[a]``,
    or a table header ``[a.b]``; None when it cannot be found (an inline table, a quoted key, ...)."""
    if not keys:
        return None
    dotted = ".".join(keys)
    table: tuple[str, ...] = ()
    header = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
    assign = re.compile(r"^\s*([A-Za-z0-9_.\-\s\"']+?)\s*=")
    for n, line in enumerate(text.splitlines(), 1):
        m = header.match(line)
        if m:
            table = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            if table[: len(keys)] == keys:
                return n
            continue
        m = assign.match(line)
        if m:
            key = tuple(p.strip().strip("\"'") for p in m.group(1).split("."))
            full = table + key
            if full == keys or ".".join(full) == dotted:
                return n
            # a key written inside an inline table: at least point at the line that opens it
            if full == keys[: len(full)] and "{" in line and keys[-1] in line:
                return n
    return None


def describe_one(model: type[BaseModel], err: dict[str, Any], data: Any) -> tuple[tuple[str, ...], str]:
    """One error as (its key path in the input, a sentence naming the fix)."""
    loc = tuple(err["loc"])
    kind = err["type"]
    is_key = bool(loc) and loc[-1] == "[key]"  # a dict's key failed, not its value
    loc = loc[:-1] if is_key else loc
    place = locate(model, loc)
    keys = place.keys
    name = ".".join(keys) or "<top level>"
    if kind in ("union_tag_not_found", "union_tag_invalid") and place.tags:
        allowed = ", ".join(place.tags)
        field = f"{name}.{place.disc}" if keys else place.disc
        table = _at(data, keys)
        if kind == "union_tag_invalid":
            got = (err.get("ctx") or {}).get("tag", (table or {}).get(place.disc) if isinstance(table, dict) else None)
            near = _nearest(str(got), place.tags)
            hint = f" (did you mean '{near}'?)" if near else ""
            return keys + (place.disc or "",), f"{field} must be one of: {allowed}; got '{got}'{hint}"
        stray = [k for k in (table or {}) if k not in place.member_keys] if isinstance(table, dict) else []
        fix = ""
        for k in stray:
            if isinstance(table[k], str) and table[k] in place.tags:
                fix = f" (write {place.disc} = \"{table[k]}\")"
                break
        got = f"got key {', '.join(repr(k) for k in stray)}" if stray else f"no '{place.disc}' key"
        return keys + tuple(stray[:1]), f"{field} must be one of: {allowed}; {got}{fix}"
    if kind == "extra_forbidden":
        bad = keys[-1] if keys else "?"
        known = list(place.fields or ())
        near = _nearest(bad, known)
        parent = ".".join(keys[:-1])
        where = f" in [{parent}]" if parent else ""
        hint = f"; did you mean '{near}'?" if near else f"; known keys{where}: {', '.join(known)}"
        return keys, f"{name}: unknown key{hint}"
    if kind == "missing":
        return keys, f"{name}: Field required"
    if place.tags and not isinstance(err.get("input"), dict):
        got = err.get("input")
        hint = f' (write [{name}] with {place.disc} = "{got}")' if got in place.tags else ""
        return keys, (f"{name} must be a table whose {place.disc} is one of: {', '.join(place.tags)}; "
                      f"got {got!r}{hint}")
    msg = str(err["msg"]).removeprefix("Value error, ")
    if kind.startswith(("literal_error", "enum")):
        msg = f"{msg}; got {err.get('input')!r}"
    if is_key:
        msg = f"key {keys[-1]!r}: {msg}" if keys else msg
    return keys, f"{name}: {msg}"
