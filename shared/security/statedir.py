"""Where Lepton keeps a user's secrets by default, and a check that a secret is not headed for git.

Private keys, the broker's CA keys and password file, and device bundles (client key and
password) default to a per-user state directory, ``$XDG_STATE_HOME/lepton`` (XDG's default
``~/.local/state/lepton``), created 0700; the files in it are written 0600. A path given on the
command line is used as given, but when it lies inside a git work tree and git does not ignore
it, the commands say so: such a file is one ``git add .`` away from a commit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path


def state_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    base = env.get("XDG_STATE_HOME") or ""
    # XDG: a relative value is invalid and must be ignored.
    root = Path(base).expanduser() if base and Path(base).expanduser().is_absolute() else Path.home() / ".local" / "state"
    return root / "lepton"


def private_dir(path: Path) -> Path:
    """Create ``path`` and its missing parents; every directory this creates is 0700, parents too
    (``$XDG_STATE_HOME`` and ``lepton/`` under it, as XDG asks), and existing ones are left as they are."""
    path = Path(path)
    missing = []
    d = path
    while not d.is_dir():
        missing.append(d)
        if d.parent == d:
            break
        d = d.parent
    for d in reversed(missing):
        d.mkdir(mode=0o700, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode goes through the umask
    return path


def git_worktree(path: Path) -> Path | None:
    """The root of the git work tree ``path`` lies in (it need not exist yet), or None."""
    p = Path(path).expanduser().absolute()
    for d in (p, *p.parents):
        if (d / ".git").exists():
            return d
    return None


def git_ignores(path: Path, root: Path) -> bool:
    """True if git would ignore ``path``; False when it would not, or when git cannot tell us."""
    git = shutil.which("git")
    if git is None:
        return False
    rel = os.path.relpath(Path(path).expanduser().absolute(), root)
    try:
        r = subprocess.run([git, "-C", str(root), "check-ignore", "-q", "--", rel], capture_output=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


def exposure_warning(path: Path, what: str) -> str | None:
    """A one-line warning when ``path`` (holding ``what``) could be committed by accident, else None."""
    root = git_worktree(path)
    if root is None or git_ignores(path, root):
        return None
    return (f"warning: {what} in {path} lies inside the git work tree {root} and git does not ignore it: one "
            f"`git add .` away from a commit. Prefer the default {state_dir()} or an ignored directory (var/).")
