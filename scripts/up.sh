#!/usr/bin/env bash
# Set up (first time) and run the whole stack on this machine: `bash scripts/up.sh [lepton up options]`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
# The home camera scenario unless a task is named (`lepton up` alone runs digits, the fast test task).
case " $* " in
  *" --task "*|*" --task="*) ;;
  *) set -- --task camera "$@" ;;
esac
exec .venv/bin/lepton up "$@"
