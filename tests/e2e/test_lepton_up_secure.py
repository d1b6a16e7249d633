"""End to end: `lepton up --secure` — the same stack on mosquitto/secure.conf with a CA made on the fly,
an identity per service and device, mutual TLS for the agent and the dynamic-security ACLs."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lepton_cli.monitor import Watcher
from shared.protocol.topics import Topics
from shared.transport.mqtt import MqttClient, MqttSettings

pytestmark = [pytest.mark.slow, pytest.mark.broker]


def test_secure_stack_runs_end_to_end_and_refuses_strangers(tmp_path):
    out = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    proc = subprocess.Popen([sys.executable, "-m", "lepton_cli.main", "up", "--secure", "--duration", "240", "--no-tui",
                             "--agents", "1", "--workdir", str(tmp_path / "stack"), "--summary", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        head = proc.stdout.readline()
        m = re.search(r"broker on 127\.0\.0\.1:(\d+) \(secure\.conf\)", head)
        assert m, head + proc.stderr.read() if proc.poll() is not None else head
        port = int(m.group(1))
        hint = "".join(proc.stdout.readline() for _ in range(3))
        pw_file = Path(re.search(r"--password-file (\S+)", hint).group(1))
        assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
        # A stranger (no credentials) and a wrong password are refused on the same listener ...
        for name, kw in (("anonymous", {}), ("wrong", {"username": "monitor_2", "password": "nope"})):
            c = MqttClient(MqttSettings(port=port, connect_timeout=2, backoff_max=0.5, **kw), client_id=name).start()
            try:
                assert not c.wait_connected(3), f"{name} got in"
                assert c.counters.get("mqtt.connect_refused") >= 1, c.last_connect_error
            finally:
                c.stop()
        # ... while the identity left for the user watches the fleet (agents' statuses are retained)
        mon = subprocess.run([sys.executable, "-m", "lepton_cli.main", "monitor", "--port", str(port), "--username",
                              "monitor_2", "--password-file", str(pw_file), "--duration", "4", "--json"],
                             capture_output=True, text=True, timeout=60, env=env)
        assert mon.returncode == 0, mon.stderr
        assert json.loads(mon.stdout)["devices"], mon.stdout
        # Stop the stack once every role has done its job (a loaded box gets more time, not a red test).
        watcher = Watcher(MqttSettings(port=port, username="monitor_2", password=pw_file.read_text().strip()),
                          Topics()).start()
        try:
            deadline = time.monotonic() + 180
            while time.monotonic() < deadline and proc.poll() is None:
                v = watcher.stats.summary()
                if v["predictions"] > 50 and v["cloud_answers"] > 0 and (v["hub"] or {}).get("counters", {}).get(
                        "in.label", 0) > 0:
                    break
                time.sleep(1)
        finally:
            watcher.stop()
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, f"{stdout[-3000:]}\n{stderr[-3000:]}"
    s = json.loads(out.read_text())
    secure = s["broker"]["secure"]
    rendered = Path(secure["config"]).read_text()
    assert s["broker"]["config"] == "mosquitto/secure.conf"
    assert len(re.findall(r"(?m)^plugin ", rendered)) == 3 and len(re.findall(r"(?m)^allow_anonymous false", rendered)) == 3
    assert set(secure["identities"]) == {"worker_1", "bridge_1", "bridge_1-bulk", "labeller_1", "monitor_1",
                                         "monitor_2", "console_1", "cam-1"}
    # Every role did its job through the ACLs: the agent ran a signed model over mTLS and got cloud
    # answers (bridge -> worker -> reply), the labeller's labels reached the bridge, the worker published.
    assert s["devices"]["cam-1"]["model"] >= 1 and s["hot_swaps"] >= 1
    assert s["predictions"] > 50 and s["cloud_answers"] > 0
    assert s["labeller"].get("labels.custody", 0) > 0  # the bridge's custody reached the labeller through its ACL
    assert s["labeller"].get("labels.sent", 0) > 0 and s["hub"]["counters"].get("in.label", 0) > 0
    assert s["workers"]["worker-1"]["state"] == "online" and s["agent_model_rejections"] == 0
    assert all(c == 0 for c in s["exit_codes"].values()), s["exit_codes"]
    # No secret in what a person sees or keeps in the summary
    password = pw_file.read_text().strip()
    assert password not in stdout and password not in out.read_text()
    key = tmp_path / "stack" / "secure" / "devices" / "cam-1" / "client.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
