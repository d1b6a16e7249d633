"""Configuration: a pydantic model filled from a TOML file, then ``LEPTON_*`` environment variables.

Environment variables override the file; nesting uses a double underscore, e.g.
``LEPTON_MQTT__PORT=1884`` sets ``mqtt.port``. Values are parsed as JSON when they parse
(numbers, booleans, lists), else taken as strings. Unknown keys are errors, so a typo in a
config file fails at startup with the path of the bad key, not silently at 3 a.m.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C", bound=BaseModel)
ENV_PREFIX = "LEPTON_"


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key and why."""


def _env_overrides(environ: Mapping[str, str], prefix: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, raw in environ.items():
        if not key.startswith(prefix) or key == prefix + "CONFIG":
            continue
        path = key[len(prefix):].lower().split("__")
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = out
        for p in path[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{key}: conflicts with another variable")
        node[path[-1]] = value
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_config(model: type[C], path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                prefix: str = ENV_PREFIX, overrides: dict[str, Any] | None = None) -> C:
    """Build ``model`` from file + env (+ explicit overrides, highest). Raises ConfigError."""
    environ = os.environ if environ is None else environ
    path = path or environ.get(prefix + "CONFIG")
    data: dict[str, Any] = {}
    if path:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {p} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {p} is not valid TOML: {exc}") from None
    data = _merge(data, _env_overrides(environ, prefix))
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(x) for x in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()]
        raise ConfigError(f"invalid {model.__name__} config{f' in {path}' if path else ''}:\n" + "\n".join(lines)) from None


_SECRET_KEYS = ("password", "secret", "token")


def redacted(cfg: BaseModel) -> dict[str, Any]:
    """The config as JSON-ready data with every secret masked, for --validate-config and logs."""

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: ("***" if v and any(s in k.lower() for s in _SECRET_KEYS) else walk(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        return o

    return walk(cfg.model_dump(mode="json"))
