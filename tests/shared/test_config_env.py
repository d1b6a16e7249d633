"""Environment variables per role, errors that say where a bad value came from, secrets out of dumps."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from cloud_worker.config import WorkerConfig
from edge_agent.config import AgentConfig
from hub_bridge.config import BridgeConfig
from shared.process.config import ConfigError, load_config, redacted
from shared.process.redact import redact_text, redact_url, url_label

AGENT_ENV = {"LEPTON_DEVICE": "cam-1", "LEPTON_TASK": "digits", "LEPTON_SOURCE__TYPE": "camera",
             "LEPTON_STREAM": "front", "LEPTON_AGENT__MODEL__ALLOW_UNSIGNED": "true"}


@pytest.mark.parametrize("model", [WorkerConfig, BridgeConfig])
def test_an_agents_exported_variables_do_not_break_the_other_roles(model):
    cfg = load_config(model, None, environ={**AGENT_ENV, "LEPTON_MQTT__PORT": "1999", "LEPTON_MOSQUITTO": "/x"})
    assert cfg.mqtt.port == 1999  # shared keys still reach every role


def test_shared_variables_still_configure_the_agent():
    cfg = load_config(AgentConfig, None, environ=AGENT_ENV)
    assert (cfg.device, cfg.task, cfg.source.type, cfg.stream) == ("cam-1", "digits", "camera", "front")


def test_a_role_prefix_reaches_only_its_role_and_wins_over_the_shared_one():
    env = {"LEPTON_MQTT__PORT": "1999", "LEPTON_WORKER__MQTT__PORT": "2001", "LEPTON_BRIDGE__ID": "hub-a",
           "LEPTON_AGENT__DEVICE": "cam-9"}
    assert load_config(WorkerConfig, None, environ=env).mqtt.port == 2001
    bridge = load_config(BridgeConfig, None, environ=env)
    assert (bridge.mqtt.port, bridge.id) == (1999, "hub-a")


def test_a_typo_under_the_role_prefix_is_an_error_naming_the_variable():
    with pytest.raises(ConfigError) as err:
        load_config(WorkerConfig, None, environ={"LEPTON_WORKER__GATE__MARGN": "0.1"})
    assert "gate.margn" in str(err.value) and "from LEPTON_WORKER__GATE__MARGN" in str(err.value)


def test_a_bad_env_value_is_blamed_on_the_variable_not_the_file(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text('device = "cam-1"\ntask = "digits"\n[source]\ntype = "camera"\n[model]\nallow_unsigned = true\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, conf, environ={"LEPTON_MQTT__PORT": "abc"})
    msg = str(err.value)
    assert "mqtt.port" in msg and "(from LEPTON_MQTT__PORT)" in msg and str(conf) not in msg


def test_a_bad_file_value_is_blamed_on_the_file(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text('device = "cam-1"\ntask = "digits"\n[source]\ntype = "camera"\nindex = -1\n')
    # the key as written in the file (not pydantic's source.camera.index), and its line
    with pytest.raises(ConfigError, match=rf"source\.index: .*\(in {conf}:5\)"):
        load_config(AgentConfig, conf, environ={})


def test_a_missing_key_says_both_ways_to_set_it(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text('task = "digits"\n[source]\ntype = "folder"\n')
    with pytest.raises(ConfigError) as err:
        load_config(AgentConfig, conf, environ={})
    msg = str(err.value)
    assert f"device: Field required (set it in {conf} or with LEPTON_AGENT__DEVICE or LEPTON_DEVICE)" in msg
    assert "LEPTON_AGENT__SOURCE__PATH or LEPTON_SOURCE__PATH" in msg


def test_the_role_config_file_variable_comes_first(tmp_path):
    mine, other = tmp_path / "w.toml", tmp_path / "a.toml"
    mine.write_text("status_interval_s = 3.0\n")
    other.write_text('device = "cam-1"\n')
    cfg = load_config(WorkerConfig, None, environ={"LEPTON_WORKER__CONFIG": str(mine), "LEPTON_CONFIG": str(other)})
    assert cfg.status_interval_s == 3.0


def test_worker_process_starts_with_an_agents_variables_exported(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    env.update(AGENT_ENV)
    r = subprocess.run([sys.executable, "-m", "cloud_worker", "run", "--validate-config"], capture_output=True,
                       text=True, timeout=60, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["worker_id"] == "worker-1"
    assert "ignoring LEPTON_DEVICE" in r.stderr  # said once, at INFO, not an error


@pytest.mark.parametrize("url,hidden,kept", [
    ("rtsp://admin:hunter2@cam.local:554/stream1", "hunter2", "rtsp://admin:***@cam.local:554/stream1"),
    ("http://tok3n@cam.local/x.mjpg", "tok3n", "http://***@cam.local/x.mjpg"),
    ("http://cam.local/x.mjpg?token=abc123&res=hd", "abc123", "http://cam.local/x.mjpg?token=***&res=hd"),
    ("https://u:p%40ss@h/x?api_key=k1", "p%40ss", "https://u:***@h/x?api_key=***"),
])
def test_urls_lose_their_credentials(url, hidden, kept):
    assert redact_url(url) == kept and hidden not in redact_url(url)
    assert hidden not in redact_text(f"cannot open {url}: refused") and hidden not in url_label(url)


def test_validate_config_dump_masks_url_credentials(tmp_path):
    conf = tmp_path / "agent.toml"
    conf.write_text('device = "cam-1"\ntask = "digits"\n[model]\nallow_unsigned = true\n[source]\ntype = "stream"\n'
                    'url = "http://user:secret@cam.local/x.mjpg?token=t0k"\n')
    out = json.dumps(redacted(load_config(AgentConfig, conf, environ={})))
    assert "secret" not in out and "t0k" not in out and "http://user:***@cam.local/x.mjpg?token=***" in out
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    r = subprocess.run([sys.executable, "-m", "edge_agent", "--config", str(conf), "--validate-config"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    assert "secret" not in r.stdout + r.stderr and "t0k" not in r.stdout + r.stderr
