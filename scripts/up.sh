#!/usr/bin/env bash
# Set up (first time) and run the whole stack on this machine: `bash scripts/up.sh [lepton up options]`.
#
# With no task named it runs the home camera scenario the way the README tells it: a person at the
# console labels the frames the cameras were unsure of (a scripted one, `--labeller queue`, three
# labels a second; open the console's address to watch or to label yourself), for eight minutes:
# four of daylight, three of night, one of the next morning. Name a task, a labeller or a duration
# and yours are used instead (`lepton up` alone runs digits, the fast test task).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
has() {  # has OPTION ARGS...: whether ARGS name OPTION
  local want=$1
  shift
  case " $* " in *" $want "*|*" $want="*) return 0 ;; *) return 1 ;; esac
}
if ! has --task "$@"; then
  set -- --task camera "$@"
  has --labeller "$@" || set -- --labeller queue --person-rate 3 "$@"
  has --duration "$@" || set -- --duration 480 "$@"
fi
exec .venv/bin/lepton up "$@"
