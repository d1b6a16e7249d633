"""lepton-bridge CLI: config validation, env overrides, a short real run."""

from __future__ import annotations

import json

import pytest

from hub_bridge.cli import main
from hub_bridge.config import BridgeConfig
from shared.process.config import ConfigError, load_config
from shared.protocol.schemas import ServiceStatus, loads

from .helpers import Collector, wait_until


def test_validate_config_prints_effective_config(tmp_path, capsys):
    conf = tmp_path / "b.toml"
    conf.write_text('id = "edge-hub"\nshare_group = "hub"\n[classes.feature]\ncapacity = 7\nttl = 3\n'
                    '[fusion]\ncontext = ["hour_sin", "meta:height"]\n')

    rc = main(["--config", str(conf), "--validate-config"])

    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["id"] == "edge-hub" and out["classes"]["feature"]["capacity"] == 7
    assert out["fusion"]["context"] == ["hour_sin", "meta:height"]


@pytest.mark.parametrize("text, key", [
    ("nope = 1\n", "nope"),
    ("[classes.event]\ncapacity = 0\nttl = 1\n", "classes.event.capacity"),
    ("[fusion]\ncontext = [\"moon_phase\"]\n", "fusion"),
    ("[classes.label]\ncapacity = 5\nttl = 1\nshare = 0.9\n[classes.feature]\ncapacity = 5\nttl = 1\nshare = 0.2\n",
     "classes"),
])
def test_bad_config_is_rejected_with_the_key(tmp_path, capsys, text, key):
    conf = tmp_path / "b.toml"
    conf.write_text(text)

    rc = main(["--config", str(conf), "--validate-config"])

    assert rc == 2
    assert key in capsys.readouterr().err


def test_env_overrides_file(tmp_path):
    conf = tmp_path / "b.toml"
    conf.write_text("[mqtt]\nport = 1884\n")

    cfg = load_config(BridgeConfig, conf, environ={"LEPTON_MQTT__PORT": "1999", "LEPTON_SHARE_GROUP": "g1",
                                                   "LEPTON_CLASSES__FEATURE__CAPACITY": "5000"})

    assert cfg.mqtt.port == 1999 and cfg.share_group == "g1"
    # A partial class override keeps that class's other defaults.
    assert cfg.classes.feature.capacity == 5000 and cfg.classes.feature.ttl == BridgeConfig().classes.feature.ttl
    with pytest.raises(ConfigError):
        load_config(BridgeConfig, None, environ={"LEPTON_FUSION__BATCH_SIZE": "0"})


@pytest.mark.broker
def test_cli_runs_publishes_status_and_stops_offline(broker, topics, mqtt_factory, tmp_path, monkeypatch):
    mon = mqtt_factory()
    statuses = Collector(mon).add(topics.hub_status())
    monkeypatch.setenv("LEPTON_ROOT", topics.root)
    monkeypatch.setenv("LEPTON_MQTT__PORT", str(broker.port))
    monkeypatch.setenv("LEPTON_STATUS_INTERVAL", "0.2")
    monkeypatch.setenv("LEPTON_ID", "cli-test")

    rc = main(["--duration", "1.0"])

    def states() -> list[str]:
        return [loads(m.payload, ServiceStatus).state for m in statuses.matching()]

    assert rc == 0
    assert wait_until(lambda: states() and states()[-1] == "offline", 5), states()
    assert states()[0] == "online"


def test_every_config_field_is_described():
    from pydantic import BaseModel

    from hub_bridge.config import ClassPolicies, ClassPolicy, FusionSettings

    missing = [f"{m.__name__}.{name}" for m in (BridgeConfig, ClassPolicies, ClassPolicy, FusionSettings)
               for name, f in m.model_fields.items() if not f.description]

    assert not missing
    assert all(m.model_config.get("extra") == "forbid" for m in (BridgeConfig, ClassPolicies, ClassPolicy,
                                                                 FusionSettings) if issubclass(m, BaseModel))
