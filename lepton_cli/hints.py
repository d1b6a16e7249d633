"""Commands a person can paste from where they are: `lepton` on PATH, else the venv's script by path.

A hint like ``lepton monitor --port 1883`` fails with "command not found" when the virtual
environment is not activated; :func:`command` names the script that runs this very install.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from shared.protocol.topics import Topics


def command(name: str, cwd: Path | None = None) -> str:
    """``name`` when PATH finds this install's script, else its path (relative when under cwd)."""
    script = Path(sys.executable).parent / name  # the venv's bin/ (not resolved: python is a symlink)
    if not script.exists():
        return name  # not a console script of this install (e.g. run from a source tree)
    found = shutil.which(name)
    if found is not None:
        try:
            if os.path.samefile(found, script):
                return name
        except OSError:
            pass
    here = (cwd or Path.cwd()).resolve()
    try:
        rel = script.absolute().relative_to(here)
    except ValueError:
        return str(script.absolute())
    return str(rel) if "/" in str(rel) else f"./{rel}"  # a bare name would be looked up on PATH


def broker_args(port: int | None, user: str | None = None, password_file: Path | None = None) -> str:
    """``-p PORT`` (and the credentials of a secure listener) for mosquitto_sub."""
    out = f"-p {port}"
    if user:
        out += f" -u {user}"
    if password_file:
        out += f' -P "$(cat {shlex.quote(str(password_file))})"'
    return out


def mosquitto_sub(root: str, port: int | None, user: str | None = None, password_file: Path | None = None) -> str:
    """The readable (JSON) topics only, filters generated from shared/protocol/topics.py's TOPIC_SPECS."""
    flt = f"$({command('lepton')} topics --json-filters" + (f" --root {root}" if root != Topics().root else "") + ")"
    return f"mosquitto_sub -v {broker_args(port, user, password_file)} {flt}"
