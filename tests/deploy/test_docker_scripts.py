"""docker/healthcheck.py and docker/keygen.py: pure verdicts, then against a real broker."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lepton_tasks import load_task
from shared.protocol import schemas
from shared.protocol.topics import Topics
from shared.security.signing import generate_keypair, load_private, sign_manifest
from shared.transport.broker import free_port

from .conftest import load_script

health = load_script("healthcheck")
keygen = load_script("keygen")
NOW = time.time()


def status(state: str = "online", device: str = "cam-1") -> bytes:
    return schemas.dumps(schemas.Status(device=device, state=state, boot=1, ts=NOW))


def bridge_status(state: str = "online", service: str = "bridge") -> bytes:
    return schemas.dumps(schemas.ServiceStatus(service=service, id="b1", state=state, ts=NOW))


def manifest(t: Topics, task: str = "digits") -> schemas.Manifest:
    return schemas.Manifest(task=task, version=1, sha256="a" * 64, size=10, artifact=str(t.artifact(task, 1)),
                            input=load_task("digits").input_spec(),
                            outputs=[schemas.TensorSpec(name="probs", dtype="float32", shape=["batch", 10])],
                            reference="TFBU", created=NOW, expires=NOW + 3600)


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    priv, pub = tmp_path / "keys" / "signing.key", tmp_path / "pub" / "signing.pub"
    generate_keypair(priv, pub)
    return priv, pub


# ---- judge(): the verdict on a retained payload ----------------------------------------------

def test_agent_online_is_healthy() -> None:
    ok, reason = health.judge("agent", status("online"), device="cam-1")

    assert ok, reason


@pytest.mark.parametrize(("payload", "why"), [
    (status("offline"), "is offline"),
    (status("online", device="cam-2"), "expected 'cam-1'"),
    (None, "no retained message"),
    (b"not json", "bad retained payload"),
    (bridge_status(), "bad retained payload (wrong_kind"),
])
def test_agent_unhealthy_cases_say_why(payload: bytes | None, why: str) -> None:
    ok, reason = health.judge("agent", payload, device="cam-1")

    assert not ok
    assert why in reason


def test_bridge_online_is_healthy_and_offline_or_worker_status_is_not() -> None:
    assert health.judge("bridge", bridge_status("online"))[0]
    assert not health.judge("bridge", bridge_status("offline"))[0]
    assert not health.judge("bridge", bridge_status("online", service="worker"))[0]


def test_worker_healthy_with_a_manifest_signed_by_the_key(keypair: tuple[Path, Path]) -> None:
    priv, pub = keypair
    wire = sign_manifest(manifest(Topics()), load_private(priv))

    ok, reason = health.judge("worker", wire, task="digits", public_key=pub)

    assert ok, reason
    assert "v1" in reason


def test_worker_unhealthy_when_the_signature_does_not_verify(keypair: tuple[Path, Path], tmp_path: Path) -> None:
    priv, _ = keypair
    other_priv, other_pub = tmp_path / "o.key", tmp_path / "o.pub"
    generate_keypair(other_priv, other_pub)
    wire = sign_manifest(manifest(Topics()), load_private(priv))
    tampered = json.loads(wire)
    tampered["version"] = 2

    assert not health.judge("worker", wire, public_key=other_pub)[0]
    assert not health.judge("worker", json.dumps(tampered).encode(), public_key=keypair[1])[0]


def test_worker_unhealthy_for_another_task_or_a_missing_key(tmp_path: Path) -> None:
    wire = schemas.dumps(manifest(Topics(), task="motions"))

    assert "expected 'digits'" in health.judge("worker", wire, task="digits")[1]
    assert "cannot read public key" in health.judge("worker", schemas.dumps(manifest(Topics())),
                                                    public_key=tmp_path / "missing.pub")[1]


def test_mqtt_settings_come_from_the_config_mqtt_table_then_env(tmp_path: Path) -> None:
    cfg = tmp_path / "svc.toml"
    cfg.write_text('device = "x"\n[mqtt]\nhost = "hub.local"\nport = 1884\n[source]\nkind = "replay"\n')

    s = health.mqtt_settings(str(cfg), {"LEPTON_MQTT__PORT": "1999", "LEPTON_DEVICE": "cam-9"})

    assert (s.host, s.port) == ("hub.local", 1999)


# ---- main(): against a real broker -------------------------------------------------------------

def env_for(broker) -> dict[str, str]:
    return {"LEPTON_MQTT__HOST": "127.0.0.1", "LEPTON_MQTT__PORT": str(broker.port)}


@pytest.mark.broker
def test_main_reads_the_retained_status_from_the_broker(broker, mqtt_factory, topics: Topics,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    pub = mqtt_factory()
    # The health check counts retained messages only: it must start after the broker holds them.
    acked = [threading.Event(), threading.Event()]
    pub.publish(topics.status("cam-1"), status("online"), qos=1, retain=True, on_ack=lambda rc: acked[0].set())
    pub.publish(topics.status("cam-2"), status("offline", device="cam-2"), qos=1, retain=True,
                on_ack=lambda rc: acked[1].set())
    assert all(ev.wait(10) for ev in acked)

    rc_online = health.main(["agent", "--root", topics.root, "--timeout", "5"], {**env_for(broker),
                                                                                 "LEPTON_DEVICE": "cam-1"})
    rc_offline = health.main(["agent", "--device", "cam-2", "--root", topics.root, "--timeout", "5"],
                             env_for(broker))

    assert (rc_online, rc_offline) == (0, 1)
    assert "healthy: agent cam-1 is online" in capsys.readouterr().out


@pytest.mark.broker
def test_main_is_unhealthy_when_nothing_is_retained(broker, topics: Topics) -> None:
    assert health.main(["bridge", "--root", topics.root, "--timeout", "1"], env_for(broker)) == 1


def test_main_is_unhealthy_when_the_broker_is_unreachable(capsys: pytest.CaptureFixture[str]) -> None:
    env = {"LEPTON_MQTT__HOST": "127.0.0.1", "LEPTON_MQTT__PORT": str(free_port())}

    rc = health.main(["bridge", "--timeout", "1"], env)

    assert rc == 1
    assert "cannot connect" in capsys.readouterr().out


def test_main_is_unhealthy_for_an_agent_without_a_device(capsys: pytest.CaptureFixture[str]) -> None:
    assert health.main(["agent", "--timeout", "1"], {}) == 1
    assert "needs --device" in capsys.readouterr().out


# ---- keygen -------------------------------------------------------------------------------------

def test_keygen_creates_the_pair_then_keeps_it(tmp_path: Path) -> None:
    priv, pub = tmp_path / "reg" / "keys" / "signing.key", tmp_path / "pub" / "signing.pub"

    assert keygen.main(["--private", str(priv), "--public", str(pub)]) == 0
    first = (priv.read_bytes(), pub.read_bytes())
    assert keygen.main(["--private", str(priv), "--public", str(pub)]) == 0

    assert (priv.read_bytes(), pub.read_bytes()) == first
    assert priv.stat().st_mode & 0o777 == 0o600
    assert keygen.public_pem(priv) == pub.read_bytes()


@pytest.mark.parametrize("damage", ["delete", "stale"])
def test_keygen_rederives_a_lost_or_stale_public_key(tmp_path: Path, damage: str) -> None:
    priv, pub = tmp_path / "signing.key", tmp_path / "pub" / "signing.pub"
    keygen.ensure_keypair(priv, pub)
    if damage == "delete":
        pub.unlink()
    else:
        generate_keypair(tmp_path / "other.key", tmp_path / "other.pub")
        pub.write_bytes((tmp_path / "other.pub").read_bytes())

    _, what = keygen.ensure_keypair(priv, pub)

    assert what == "public rewritten"
    assert pub.read_bytes() == keygen.public_pem(priv)


def test_keygen_fails_cleanly_on_a_corrupt_private_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    priv = tmp_path / "signing.key"
    priv.write_text("not a key")

    rc = keygen.main(["--private", str(priv), "--public", str(tmp_path / "signing.pub")])

    assert rc == 1
    assert "keygen failed" in capsys.readouterr().err
