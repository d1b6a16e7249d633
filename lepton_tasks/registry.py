"""Where tasks come from: the specs Lepton ships, a spec file's path, and installed task packs.

``load_task("health")`` finds a shipped spec (``lepton_tasks/specs/<name>.toml``) or a task pack's:
a pip-installed package declares an entry point in the ``lepton.tasks`` group whose value is a
``module:attribute`` naming the spec file (a ``Path`` or ``str``, or a callable returning one).
``load_task("./my-task.toml")`` (anything ending in ``.toml`` or containing a path separator)
reads that file. Shipped names win over packs of the same name; a clash is reported by ``tasks list``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from lepton_tasks.spec import TaskSpec, TaskSpecError, read_spec
from lepton_tasks.task import Task

SPECS = Path(__file__).resolve().parent / "specs"
ENTRY_POINT_GROUP = "lepton.tasks"

_loaded: dict[str, Task] = {}  # by spec path
_by_name: dict[str, Task] = {}


@dataclass(frozen=True)
class Found:
    name: str
    path: Path
    origin: str  # "shipped", "pack <distribution>", "path"


def is_path(ref: str) -> bool:
    return ref.endswith(".toml") or os.sep in ref or "/" in ref


def _entry_points() -> list[Found]:
    out = []
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            target = ep.load()
            path = Path(target() if callable(target) else target)
        except Exception as exc:  # a broken pack must not hide the others
            raise TaskSpecError(f"task pack {ep.name} ({ep.value}): cannot load: {exc}") from None
        dist = ep.dist.name if ep.dist is not None else "?"
        out.append(Found(ep.name, path, f"pack {dist}"))
    return out


def available() -> list[Found]:
    """Every task Lepton can find by name, shipped ones first."""
    found = [Found(p.stem, p, "shipped") for p in sorted(SPECS.glob("*.toml"))]
    names = {f.name for f in found}
    for f in _entry_points():
        if f.name not in names:
            found.append(f)
            names.add(f.name)
    return found


def locate(ref: str) -> Found:
    if is_path(ref):
        p = Path(ref).expanduser()
        if not p.is_file():
            raise TaskSpecError(f"task spec {ref} does not exist")
        return Found(p.stem, p.resolve(), "path")
    for f in available():
        if f.name == ref:
            return f
    names = ", ".join(f.name for f in available())
    raise TaskSpecError(f"unknown task {ref!r}: not a shipped task, an installed pack or a .toml path "
                        f"(known: {names})")


def load_task(ref: str) -> Task:
    """A task by name or spec path; one instance per spec file in this process (its data is cached).
    A task loaded by its path is then found by its name too (refs and labels name it)."""
    if not is_path(ref) and ref in _by_name:
        return _by_name[ref]
    found = locate(ref)
    key = str(found.path)
    task = _loaded.get(key)
    if task is None:
        spec: TaskSpec = read_spec(found.path)
        if found.origin != "path" and spec.name != found.name:
            raise TaskSpecError(f"{found.path}: name {spec.name!r} differs from the name it is found by "
                                f"({found.name!r})")
        task = _loaded[key] = Task(spec, found.origin, found.path.parent)
        _by_name.setdefault(spec.name, task)
    return task
