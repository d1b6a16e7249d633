"""The agent runs on a Pi without torch: importing every edge_agent module must not pull it in."""

import pkgutil
import subprocess
import sys
from pathlib import Path

import edge_agent


def test_no_edge_agent_module_imports_torch():
    # Prepare
    names = sorted(f"edge_agent.{m.name}" for m in pkgutil.iter_modules(edge_agent.__path__) if m.name != "__main__")
    code = ("import importlib, sys\n"
            f"for n in {names!r}: importlib.import_module(n)\n"
            "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.'))\n"
            "print('MODULES', len(sys.modules)); print('TORCH', bad)\n"
            "sys.exit(1 if bad else 0)\n")
    # Execute
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       cwd=Path(edge_agent.__file__).resolve().parent.parent)
    # Assert
    assert "edge_agent.agent" in names and "edge_agent.cli" in names
    assert r.returncode == 0, r.stdout + r.stderr
    assert "TORCH []" in r.stdout
