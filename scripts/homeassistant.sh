#!/usr/bin/env bash
# The Home Assistant integration test (tests/integrations/test_home_assistant.py) against a real
# Home Assistant: a venv of its own in build/homeassistant (about 400 MB, cached: a rerun on the
# same machine installs nothing), then pytest on that test with LEPTON_HA_PYTHON pointing at it.
# .ci/run calls this after the deployment tests. Home Assistant 2024.3 needs Python 3.11 or 3.12.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure.sh
HA_VERSION=2024.3.3
venv=build/homeassistant/venv
stamp=$venv/.lepton-ha-$HA_VERSION
PY=${HA_PYTHON:-python3}
if ! "$PY" -c 'import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] < (3, 13) else 1)'; then
    echo "homeassistant: $("$PY" --version 2>&1) cannot run Home Assistant $HA_VERSION (3.11 or 3.12): the test skips"
    exec .venv/bin/python -m pytest -q -p no:cacheprovider tests/integrations/test_home_assistant.py "$@"
fi
if [ ! -f "$stamp" ]; then
    t=$SECONDS
    echo "homeassistant: installing Home Assistant $HA_VERSION into $venv (usually 2-5 minutes, once)"
    rm -rf "$venv"
    "$PY" -m venv "$venv"
    # josepy 2 removed ComparableX509, which this Home Assistant's cloud component imports at
    # onboarding (HTTP 500 without the pin); it does not pin josepy itself.
    # The requirements of the integrations the test loads (mqtt, http, onboarding), so Home Assistant,
    # started with --skip-pip, installs nothing at run time.
    "$venv/bin/python" -m pip install -q "homeassistant==$HA_VERSION" "josepy<2" paho-mqtt==1.6.1 Pillow==10.2.0 \
        janus==1.0.0 >"$venv.log" 2>&1 \
        || { echo "homeassistant: install failed, the end of $venv.log:"; tail -n 20 "$venv.log"; exit 1; }
    # One start with pip allowed installs what the integrations the test loads need at start-up (the
    # frontend, among others) into this venv; the test then runs with --skip-pip.
    "$venv/bin/python" - "$venv" <<'PY' || { echo "homeassistant: the first start failed"; exit 1; }
import socket, subprocess, sys, time, urllib.request
from pathlib import Path
work = Path(sys.argv[1]).parent / "warmup"
work.mkdir(parents=True, exist_ok=True)
with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
(work / "configuration.yaml").write_text(
    "homeassistant:\n  name: warm-up\n  latitude: 52.0\n  longitude: 4.0\n  elevation: 0\n"
    "  unit_system: metric\n  time_zone: UTC\n  currency: EUR\n  country: NL\n"
    f"http:\n  server_host: 127.0.0.1\n  server_port: {port}\napi:\nconfig:\nonboarding:\nmqtt:\n")
p = subprocess.Popen([sys.executable, "-m", "homeassistant", "--config", str(work)],
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
try:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and p.poll() is None:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/onboarding", timeout=5).read()
            break
        except OSError:
            time.sleep(2)
    else:
        sys.exit(1)
finally:
    p.terminate()
    p.wait(60)
PY
    touch "$stamp"
    echo "homeassistant: installed in $((SECONDS - t)) s"
fi
LEPTON_HA_PYTHON="$PWD/$venv/bin/python" exec .venv/bin/python -m pytest -q -p no:cacheprovider \
    tests/integrations/test_home_assistant.py "$@"
