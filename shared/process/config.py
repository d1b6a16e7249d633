"""Configuration: a pydantic model filled from a TOML file, then environment variables.

Two layers of environment variables override the file, nesting with a double underscore:

- the **role's own prefix**, ``LEPTON_AGENT__``, ``LEPTON_BRIDGE__`` or ``LEPTON_WORKER__``
  (the model's ``ENV_ROLE``): ``LEPTON_WORKER__MQTT__PORT=1884`` sets the worker's
  ``mqtt.port`` and nobody else's. Every such variable must name a real key: a typo is an error.
- the **shared prefix** ``LEPTON_``: ``LEPTON_MQTT__PORT=1884`` sets ``mqtt.port`` of every role
  that has an ``mqtt`` key. A shared variable whose first key the role does not have
  (``LEPTON_DEVICE`` for a worker) is ignored, so one exported for an agent cannot break a
  worker started from the same shell. Below the first key everything is checked as usual.

The role's prefix wins over the shared one. Values are parsed as JSON when they parse
(numbers, booleans, lists), else taken as strings. Unknown keys in the file are errors, so a
typo fails at startup with the path of the bad key, and every error says where the bad value
came from: the file, or which environment variable.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from shared.process.config_errors import describe_one, key_line
from shared.process.redact import MASK, is_secret_key, redact_url

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

C = TypeVar("C", bound=BaseModel)
ENV_PREFIX = "LEPTON_"
# The roles with a prefix of their own; a shared LEPTON_<ROLE>__... variable belongs to that role only.
ROLES = ("agent", "bridge", "worker")


class ConfigError(ValueError):
    """A config that cannot be used; the message says which key, why, and where the value came from."""


@dataclass
class EnvLayer:
    """Overrides taken from the environment, with the variable that set each key."""

    values: dict[str, Any] = field(default_factory=dict)
    origin: dict[tuple[str, ...], str] = field(default_factory=dict)  # key path -> variable name
    ignored: list[str] = field(default_factory=list)  # shared variables this role has no key for


def _parse(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _put(layer: EnvLayer, var: str, path: list[str], raw: str) -> None:
    node = layer.values
    for p in path[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"{var}: conflicts with another variable setting {'.'.join(path[:-1])}")
    node[path[-1]] = _parse(raw)
    layer.origin[tuple(path)] = var


def role_prefix(role: str, prefix: str = ENV_PREFIX) -> str:
    return f"{prefix}{role.upper()}__"


def env_overrides(model: type[BaseModel], environ: Mapping[str, str], prefix: str = ENV_PREFIX,
                  role: str | None = None) -> EnvLayer:
    """The environment layer for ``model``: shared variables for keys it knows, then its role's."""
    shared, own = EnvLayer(), EnvLayer()
    mine = role_prefix(role, prefix) if role else None
    others = tuple(role_prefix(r, prefix) for r in ROLES)
    for var in sorted(environ):
        if not var.startswith(prefix) or var == prefix + "CONFIG":
            continue
        if mine and var.startswith(mine):
            rest = var[len(mine):]
            if rest and rest != "CONFIG":
                _put(own, var, rest.lower().split("__"), environ[var])
            continue
        if var.startswith(others):
            continue  # another role's
        path = var[len(prefix):].lower().split("__")
        if path[0] not in model.model_fields:
            shared.ignored.append(var)
            continue
        _put(shared, var, path, environ[var])
    merged = EnvLayer(_merge(shared.values, own.values), {**shared.origin}, shared.ignored)
    # A role variable that replaces a shared subtree takes over the origin of everything below it.
    for path, var in own.origin.items():
        for p in [p for p in merged.origin if p[:len(path)] == path]:
            del merged.origin[p]
        merged.origin[path] = var
    return merged


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _key_path(loc: tuple[Any, ...], data: Any) -> tuple[str, ...]:
    """The error location as keys of the input: union tags (``source.stream.url``) dropped."""
    out: list[str] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(str(part))
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            out.append(str(part))
            node = node[part]
        elif isinstance(node, dict) and isinstance(part, str):
            continue  # a discriminator tag, or a key that is missing (reported on the path so far)
    return tuple(out)


def _origin(err: Any, data: dict[str, Any], env: EnvLayer, file: Path | None, prefix: str, role: str | None,
            text: str = "", keys: tuple[str, ...] = ()) -> str:
    """Where the value behind one validation error came from, in words (with the file's line when found)."""
    loc = tuple(err["loc"])
    if err["type"] == "missing" and loc:
        keys = (*_key_path(loc[:-1], data), str(loc[-1]))
        name = "__".join(keys).upper()
        where = [f"{role_prefix(role, prefix)}{name}"] if role else []
        where.append(f"{prefix}{name}")
        return f"set it in {file if file else 'a config file'} or with {' or '.join(where)}"
    if not loc:
        return f"from {' + '.join(_sources(file, env))}"
    path = keys or _key_path(loc, data)
    for n in range(len(path), 0, -1):
        var = env.origin.get(path[:n])
        if var is not None:
            return f"from {var}"
    if file is not None:
        line = key_line(text, path)
        return f"in {file}:{line}" if line else f"in {file}"
    return "from the defaults"


def _sources(file: Path | None, env: EnvLayer) -> list[str]:
    out = [str(file)] if file is not None else []
    out += sorted(set(env.origin.values()))
    return out or ["defaults"]


def load_config(model: type[C], path: str | Path | None = None, *, environ: Mapping[str, str] | None = None,
                prefix: str = ENV_PREFIX, overrides: dict[str, Any] | None = None, role: str | None = None) -> C:
    """Build ``model`` from file + env (+ explicit overrides, highest). Raises ConfigError.

    ``role`` (default: the model's ``ENV_ROLE`` class attribute) names the role's own prefix;
    its ``LEPTON_<ROLE>__CONFIG`` is read before the shared ``LEPTON_CONFIG``.
    """
    environ = os.environ if environ is None else environ
    role = role or getattr(model, "ENV_ROLE", None)
    if not path:
        path = (environ.get(role_prefix(role, prefix) + "CONFIG") if role else None) or environ.get(prefix + "CONFIG")
    file: Path | None = Path(path) if path else None
    file_data: dict[str, Any] = {}
    text = ""
    if file is not None:
        try:
            text = file.read_text()
            file_data = tomllib.loads(text)
        except FileNotFoundError:
            raise ConfigError(f"config file {file} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(toml_error(file, exc)) from None
    env = env_overrides(model, environ, prefix, role)
    data = _merge(file_data, env.values)
    if overrides:
        data = _merge(data, overrides)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = []
        for e in exc.errors():
            keys, sentence = describe_one(model, e, data)
            lines.append(f"{sentence} ({_origin(e, data, env, file, prefix, role, text, keys)})")
        # one mistake, one line; several, one line each under a heading
        head = f"invalid {model.__name__} config:"
        raise ConfigError(f"{head} {lines[0]}" if len(lines) == 1 else "\n  ".join([head, *lines])) from None


def toml_error(file: Path | str, exc: Exception) -> str:
    """A TOML syntax error as ``file:line:col: not valid TOML: what`` (tomllib puts the place at the end)."""
    msg = str(exc)
    m = re.search(r"\s*\(at line (\d+), column (\d+)\)$", msg)
    if m:
        return f"{file}:{m.group(1)}:{m.group(2)}: not valid TOML: {msg[:m.start()]}"
    return f"{file}: not valid TOML: {msg}"


def ignored_env(model: type[BaseModel], environ: Mapping[str, str] | None = None, prefix: str = ENV_PREFIX) -> list[str]:
    """Shared ``LEPTON_*`` variables this model's role does not read (for a startup log line)."""
    environ = os.environ if environ is None else environ
    return env_overrides(model, environ, prefix, getattr(model, "ENV_ROLE", None)).ignored


def redacted(cfg: BaseModel) -> dict[str, Any]:
    """The config as JSON-ready data with every secret masked, for --validate-config and logs:
    values of password/secret/token keys, and credentials inside any URL."""

    def walk(o: Any) -> Any:
        if isinstance(o, dict):
            return {k: (MASK if v and is_secret_key(k) else walk(v)) for k, v in o.items()}
        if isinstance(o, list):
            return [walk(v) for v in o]
        if isinstance(o, str) and "://" in o:
            return redact_url(o)
        return o

    return walk(cfg.model_dump(mode="json"))
