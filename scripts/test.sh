#!/usr/bin/env bash
# The test command: unit, integration (real mosquitto) and end-to-end tests. Sets up on first run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
exec .venv/bin/python -m pytest -q "$@"
