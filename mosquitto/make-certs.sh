#!/usr/bin/env bash
# Make the broker's TLS material in DIR (default /etc/mosquitto/lepton): a server CA, a device CA,
# the broker certificate for the given host names, and an empty CRL. Idempotent: existing CAs
# are kept. Device certificates come from `lepton provision DEVICE --broker-dir DIR`.
#   mosquitto/make-certs.sh [DIR] [HOSTNAME...]
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/etc/mosquitto/lepton}"
shift || true
args=(keys tls --broker-dir "$dir")
for name in "$@"; do args+=(--name "$name"); done
py=python3
[ -x .venv/bin/python ] && py=.venv/bin/python
exec "$py" -m lepton_cli.main "${args[@]}"
