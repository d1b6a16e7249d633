#!/usr/bin/env bash
# The test command: unit, integration (real mosquitto) and end-to-end tests.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -m pytest -q "$@"
