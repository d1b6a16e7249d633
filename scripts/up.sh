#!/usr/bin/env bash
# Set up (first time) and run the whole stack on this machine: `bash scripts/up.sh [lepton up options]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
exec .venv/bin/lepton up "$@"
