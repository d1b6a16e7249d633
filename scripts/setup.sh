#!/usr/bin/env bash
# Create .venv and install Lepton with every role's extras (CPU torch from the local wheel cache or PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and pinned: an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q "torch==2.13.0" || .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
.venv/bin/python -m pip install -q -e ".[edge,hub,cloud,data,console,dev]"
echo "lepton installed in .venv"
