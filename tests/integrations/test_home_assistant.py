"""A real Home Assistant discovers a Lepton device by MQTT discovery, follows its alerts and its availability.

Home Assistant 2024.3 runs headless in a venv of its own (scripts/homeassistant.sh makes it and points
LEPTON_HA_PYTHON at it; without it this test skips), with --skip-pip: every requirement is installed
beforehand, nothing is downloaded. The test onboards it over its REST API, sets up its MQTT integration
against the test broker, starts a real agent process with Home Assistant discovery on, and asserts over
the REST API that the device and its entities appear, that the alert class's binary sensor turns on,
and that the entities become unavailable when the agent is killed (its last will).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest

from shared.transport.broker import free_port
from tests.edge.conftest import publish_release
from tests.edge.models import release

REPO = Path(__file__).resolve().parents[2]
HA_PYTHON = os.environ.get("LEPTON_HA_PYTHON", "")

pytestmark = [
    pytest.mark.broker, pytest.mark.slow,
    pytest.mark.skipif(not HA_PYTHON or not Path(HA_PYTHON).exists(),
                       reason="no Home Assistant venv: `bash scripts/homeassistant.sh` makes one and runs this test"),
]

HA_CONFIG = """
homeassistant:
  name: Lepton test
  latitude: 52.0
  longitude: 4.0
  elevation: 0
  unit_system: metric
  time_zone: UTC
  currency: EUR
  country: NL
http:
  server_host: 127.0.0.1
  server_port: {port}
api:
config:
onboarding:
"""


class HomeAssistant:
    def __init__(self, python: str, workdir: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.dir = workdir
        self.token = ""
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "configuration.yaml").write_text(HA_CONFIG.format(port=self.port))
        self.log = open(workdir / "ha.out", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([python, "-m", "homeassistant", "--config", str(workdir), "--skip-pip"],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=workdir)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()

    def tail(self) -> str:
        text = (self.dir / "ha.out").read_text(errors="replace")
        return text[-3000:]

    def request(self, method: str, path: str, body: dict | None = None, form: dict | None = None,
                timeout: float = 10.0):
        data, headers = None, {}
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        elif form is not None:
            data, headers["Content-Type"] = urllib.parse.urlencode(form).encode(), "application/x-www-form-urlencoded"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        with urllib.request.urlopen(req, timeout=timeout) as r:
            raw = r.read()
            ctype = r.headers.get("Content-Type", "")
        return json.loads(raw) if "json" in ctype else raw.decode()

    def wait_ready(self, timeout: float = 240.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"Home Assistant exited {self.proc.returncode}:\n{self.tail()}")
            try:
                self.request("GET", "/api/onboarding")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(1.0)
        raise AssertionError(f"Home Assistant's API did not answer within {timeout}s:\n{self.tail()}")

    def onboard(self) -> None:
        client_id = self.base + "/"
        user = self.request("POST", "/api/onboarding/users", {
            "client_id": client_id, "name": "Lepton", "username": "lepton", "password": uuid.uuid4().hex,
            "language": "en"})
        tok = self.request("POST", "/auth/token", form={
            "grant_type": "authorization_code", "code": user["auth_code"], "client_id": client_id})
        self.token = tok["access_token"]

    def add_mqtt(self, port: int) -> None:
        flow = self.request("POST", "/api/config/config_entries/flow", {"handler": "mqtt"})
        for _ in range(3):  # the form's steps: the broker, then (some versions) its options
            if flow.get("type") == "create_entry":
                return
            assert flow.get("type") == "form", flow
            fields = {f["name"] for f in flow.get("data_schema", [])}
            answer = {k: v for k, v in {"broker": "127.0.0.1", "port": port}.items() if k in fields}
            flow = self.request("POST", f"/api/config/config_entries/flow/{flow['flow_id']}", answer)
        assert flow.get("type") == "create_entry", flow

    def state(self, entity: str) -> str | None:
        try:
            return self.request("GET", f"/api/states/{entity}")["state"]
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def template(self, text: str) -> str:
        return str(self.request("POST", "/api/template", {"template": text})).strip()


def wait_for(pred, timeout: float, what: str, ha: HomeAssistant):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r}):\n{ha.tail()}")


def test_home_assistant_discovers_a_lepton_camera_follows_its_alerts_and_sees_it_go(
        tmp_path, broker, topics, mqtt_factory):
    ha = HomeAssistant(HA_PYTHON, tmp_path / "ha")
    agent = None
    try:
        ha.wait_ready()
        ha.onboard()
        ha.add_mqtt(broker.port)
        publish_release(mqtt_factory(), topics, release(topics, "digits", 1))
        dev = f"cam-{uuid.uuid4().hex[:6]}"
        cfg = tmp_path / "agent.toml"
        cfg.write_text(f"""
device = "{dev}"
root = "{topics.root}"
task = "digits"
stream = "front"
state_dir = "{tmp_path / 'agent'}"
[mqtt]
host = "127.0.0.1"
port = {broker.port}
[source]
type = "replay"
split = "stream"
loop = true
fps = 20
[model]
allow_unsigned = true
[outbox]
custody = false
[events]
alert_classes = ["0"]
[home_assistant]
enabled = true
hold_s = 3600
""")
        agent = subprocess.Popen([sys.executable, "-m", "edge_agent", "--config", str(cfg)], cwd=REPO,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        uid = dev.replace("-", "_")
        alert = f"binary_sensor.lepton_{uid}_digits_0"
        klass = f"sensor.lepton_{uid}_digits_class"
        wait_for(lambda: ha.state(alert) is not None and ha.state(klass) is not None, 90,
                 "the device's entities in Home Assistant", ha)
        assert ha.template(f"{{{{ device_attr(device_id('{alert}'), 'name') }}}}") == dev
        assert ha.template(f"{{{{ device_attr(device_id('{alert}'), 'sw_version') }}}}") == "model v1"
        assert ha.template(f"{{{{ device_attr(device_id('{alert}'), 'manufacturer') }}}}") == "Lepton"
        # digit 0 is the alert class; the replayed stream shows one within seconds
        wait_for(lambda: ha.state(alert) == "on", 90, f"{alert} on", ha)
        assert ha.state(klass) in [str(i) for i in range(10)]
        agent.send_signal(signal.SIGKILL)
        agent.wait(10)
        # The broker publishes the agent's last will (status offline), which is every entity's availability.
        wait_for(lambda: ha.state(alert) == "unavailable" and ha.state(klass) == "unavailable", 90,
                 "the entities unavailable after the agent was killed", ha)
    finally:
        if agent is not None and agent.poll() is None:
            agent.kill()
            agent.wait(10)
        ha.stop()
