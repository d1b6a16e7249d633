#!/usr/bin/env bash
# Idempotent: mosquitto from apt if missing, then .venv with every role's extras.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || pkgs+=(mosquitto mosquitto-clients)
"${PYTHON:-python3}" -c 'import ensurepip' 2>/dev/null || pkgs+=(python3-venv)
if [ ${#pkgs[@]} -gt 0 ]; then
  echo "setup: installing ${pkgs[*]} with apt-get (usually under a minute)"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}"
fi
stamp=.venv/.lepton-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  if [ -f "$stamp" ]; then echo "setup: pyproject.toml changed since .venv was installed: installing again"; fi
  bash scripts/setup.sh
  touch "$stamp"
fi
