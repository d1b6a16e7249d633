"""The layering, written down once: which package and which room may import which, and no import cycles.

Read from the code with ast (every import counts: at module level, inside functions, under
TYPE_CHECKING). A failure names the importing file, the line, the import and the rule it breaks.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# package -> the other packages it may import. Roles sit on shared and the task packs; views sit
# below both the console and the CLI; the CLI starts everything, so it may import anything.
PACKAGES: dict[str, set[str]] = {
    "shared": set(),
    "lepton_tasks": {"shared"},
    "edge_agent": {"shared", "lepton_tasks"},
    "hub_bridge": {"shared", "lepton_tasks"},
    "cloud_worker": {"shared", "lepton_tasks"},
    "lepton_views": {"shared", "lepton_tasks"},
    "lepton_console": {"shared", "lepton_tasks", "lepton_views"},
    "lepton_cli": {"shared", "lepton_tasks", "edge_agent", "hub_bridge", "cloud_worker", "lepton_views",
                   "lepton_console"},
}

# package -> room -> the rooms of the same package it may import. A room is a subpackage or a
# top-level module; one not listed (a role's service, cli, __main__) composes the rooms and may import
# any of them.
ROOMS: dict[str, dict[str, set[str]]] = {
    "shared": {
        "process": set(),
        "protocol": {"process"},
        "model": {"process", "protocol"},
        "security": {"process", "protocol"},
        "transport": {"process", "protocol", "security"},
        "stores": {"process", "protocol", "security", "transport"},
    },
    "cloud_worker": {
        "config": set(),
        "registry": set(),
        "models": {"config", "registry"},
        "releasing": {"config", "registry", "models"},
        "learning": {"config", "registry", "models", "releasing"},
        "answering": {"config", "registry", "models"},
        "rollout": {"config", "registry", "releasing", "answering"},
    },
}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def _imports(path: Path, mod: str, known: dict[str, Path]):
    """(line, imported module) for each import of a project module in ``path``."""
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = mod.split(".")
                anchor = anchor[: len(anchor) - node.level + (1 if is_pkg else 0)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import sub` imports the submodule when there is one, else a name of pkg
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name:
                yield node.lineno, name


def _room(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else ""


def _graph():
    known = _modules()
    return known, {m: list(_imports(p, m, known)) for m, p in known.items()}


def test_each_package_and_room_imports_only_what_its_layer_allows():
    known, graph = _graph()
    broken = []
    for mod, imports in graph.items():
        pkg, room = mod.split(".")[0], _room(mod)
        for line, dst in imports:
            dpkg, droom = dst.split(".")[0], _room(dst)
            where = f"{known[mod].relative_to(REPO)}:{line} imports {dst}"
            if dpkg != pkg and dpkg not in PACKAGES[pkg]:
                broken.append(f"{where}: {pkg} may import only {sorted(PACKAGES[pkg]) or 'nothing else'}")
            elif dpkg == pkg and pkg in ROOMS and room in ROOMS[pkg] and droom != room:
                allowed = ROOMS[pkg][room]
                if droom not in allowed:
                    broken.append(f"{where}: {pkg}.{room} may import only {sorted(allowed) or 'nothing'} "
                                  f"of {pkg}")
    assert not broken, "imports against the layering:\n" + "\n".join(broken)


def _cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        x = stack.pop()
                        on.discard(x)
                        comp.append(x)
                        if x == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
            elif w not in index:
                index[w] = low[w] = len(index)
                stack.append(w)
                on.add(w)
                work.append((w, iter(graph[w])))
            elif w in on:
                low[v] = min(low[v], index[w])
    return out


def test_no_modules_import_each_other():
    known, graph = _graph()
    edges = {m: sorted({d for _, d in imps if d != m}) for m, imps in graph.items()}
    cycles = _cycles(edges)
    lines = []
    for comp in cycles:
        inside = [f"  {m} -> {d}" for m in comp for d in edges[m] if d in comp]
        lines.append(f"cycle of {len(comp)} modules:\n" + "\n".join(inside))
    assert not cycles, "\n".join(lines)


def test_the_checks_see_a_cycle_and_a_broken_layer():
    """The two checks above can fail: a made-up graph with a cycle, and a real import turned around."""
    assert _cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert _cycles({"a": ["b"], "b": []}) == []
    known, graph = _graph()
    lines = [dst for _, dst in graph["shared.transport.mqtt"]]
    assert "shared.protocol.topics" in lines and "shared.transport.message" in lines
    assert "shared" not in PACKAGES["shared"] and "lepton_cli" not in PACKAGES["lepton_console"]
