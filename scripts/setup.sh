#!/usr/bin/env bash
# Create .venv and install Lepton with every role's extras (CPU torch from the local wheel cache or PyPI).
# One line per step with how long it took; pip's own output goes to .venv/setup.log, whose end is
# printed when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
LOG=.venv/setup.log
T0=$SECONDS
say() { printf 'setup: %s\n' "$*"; }

# step "what it does" command...: quiet into the log, timed, loud on failure.
step() {
    local what=$1 t=$SECONDS
    shift
    say "$what"
    if ! "$@" >>"$LOG" 2>&1; then
        say "failed: $what; the last lines of $LOG:"
        tail -n 25 "$LOG" >&2
        exit 1
    fi
    say "  done in $((SECONDS - t)) s"
}

# torch pinned: an unpinned torch would pull a multi-GB CUDA build. The local cache first, then
# PyTorch's CPU index.
install_torch() {
    .venv/bin/python -m pip install -q "torch==2.13.0" ||
        .venv/bin/python -m pip install -q torch --index-url https://download.pytorch.org/whl/cpu
}

if [ ! -x .venv/bin/python ]; then
    say "creating .venv with $("$PY" --version 2>&1) (the whole setup usually takes 1-2 minutes)"
    "$PY" -m venv .venv
fi
: >"$LOG"
step "upgrading pip" .venv/bin/python -m pip install -q --upgrade pip
step "installing torch 2.13.0, CPU build (usually 15-60 s)" install_torch
step "installing lepton with every role's extras: edge, hub, cloud, data, console, dev (usually 30-90 s)" \
    .venv/bin/python -m pip install -q -e ".[edge,hub,cloud,data,console,dev]"
say "lepton installed in .venv in $((SECONDS - T0)) s (pip's output: $LOG)"
