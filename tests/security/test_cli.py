"""`lepton keys` and `lepton provision` through lepton_cli.main.main (real mosquitto_passwd, no broker)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from lepton_cli.main import main as lepton
from shared.process.config import tomllib  # tomllib on 3.11+, tomli on 3.10
from shared.security.signing import key_id, load_private, load_public
from shared.transport.mqtt import MqttSettings


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    d = tmp_path / "keys"
    assert lepton(["keys", "init", "--dir", str(d)]) == 0
    return d


def prov(tmp_path: Path, keys: Path, ident: str, *extra: str) -> int:
    return lepton(["provision", "--broker-dir", str(tmp_path / "broker"), "--out", str(tmp_path / "out" / ident),
                   "--signing-pub", str(keys / "signing.pub"), *extra, "--", ident])


def test_keys_init_writes_a_private_key_only_its_owner_can_read(keys: Path):
    priv, pub = keys / "signing.key", keys / "signing.pub"
    assert mode(priv) == 0o600
    assert key_id(load_private(priv).public_key()) == key_id(load_public(pub))


def test_keys_init_refuses_to_overwrite(keys: Path, capsys):
    before = (keys / "signing.key").read_bytes()
    capsys.readouterr()
    assert lepton(["keys", "init", "--dir", str(keys)]) == 1
    assert "refusing to overwrite" in capsys.readouterr().err
    assert (keys / "signing.key").read_bytes() == before


def test_keys_show_prints_the_key_id(keys: Path, capsys):
    capsys.readouterr()
    assert lepton(["keys", "show", "--dir", str(keys)]) == 0
    assert capsys.readouterr().out.strip() == key_id(load_public(keys / "signing.pub"))


def test_keys_tls_writes_a_dynsec_config_that_denies_everything(tmp_path: Path):
    assert lepton(["keys", "tls", "--broker-dir", str(tmp_path / "broker")]) == 0
    dynsec = json.loads((tmp_path / "broker" / "dynsec.json").read_text())
    assert dynsec["clients"] == [] and dynsec["roles"] == []
    assert not any(dynsec["defaultACLAccess"][k] for k in ("publishClientSend", "publishClientReceive", "subscribe"))


def test_provision_writes_a_complete_bundle(tmp_path: Path, keys: Path):
    # Execute
    assert prov(tmp_path, keys, "cam-1", "--host", "broker.example") == 0
    # Assert
    out, broker = tmp_path / "out" / "cam-1", tmp_path / "broker"
    assert {p.name for p in out.iterdir()} == {"device.toml", "ca.crt", "client.crt", "client.key", "signing.pub"}
    assert mode(out / "client.key") == 0o600 and mode(out / "device.toml") == 0o600
    cfg = tomllib.loads((out / "device.toml").read_text())
    settings = MqttSettings(**cfg["mqtt"])  # the [mqtt] table is exactly shared.transport.mqtt's settings
    assert cfg["device"] == "cam-1" and cfg["root"] == "lepton/v1"
    assert settings.username == "cam-1" and settings.port == 8883 and settings.host == "broker.example"
    assert settings.tls is not None and settings.tls.cert == out.resolve() / "client.crt"
    assert len(settings.password or "") >= 24
    assert key_id(load_public(keys / "signing.pub")) in (out / "device.toml").read_text()
    assert cfg["model"]["public_key"] == str(out.resolve() / "signing.pub")
    assert (out / "signing.pub").read_bytes() == (keys / "signing.pub").read_bytes()
    assert not any("PRIVATE" in p.read_text() for p in out.iterdir() if p.name != "client.key")
    passwd = (broker / "passwd").read_text()
    assert passwd.startswith("cam-1:$") and settings.password not in passwd
    cert = x509.load_pem_x509_certificate((out / "client.crt").read_bytes())
    device_ca = x509.load_pem_x509_certificate((broker / "device-ca.crt").read_bytes())
    assert cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "cam-1"
    assert isinstance(device_ca.public_key(), ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(device_ca)
    assert (out / "ca.crt").read_bytes() == (broker / "server-ca.crt").read_bytes()
    assert mode(broker / "device-ca.key") == 0o600 and mode(broker / "server.key") == 0o600
    assert "/etc/mosquitto/lepton" not in (broker / "mosquitto.conf").read_text()
    dynsec = json.loads((broker / "dynsec.json").read_text())
    assert [c["username"] for c in dynsec["clients"]] == ["cam-1"]
    assert "password" not in dynsec["clients"][0]  # passwd alone authenticates (reloaded on SIGHUP)
    assert settings.password not in (broker / "dynsec.json").read_text()


def test_provision_service_identity_gets_an_acl_block(tmp_path: Path, keys: Path):
    assert prov(tmp_path, keys, "worker_1") == 0
    cfg = tomllib.loads((tmp_path / "out" / "worker_1" / "service.toml").read_text())
    assert cfg["service"] == "worker_1" and cfg["mqtt"]["port"] == 1883 and "tls" not in cfg["mqtt"]
    acl = (tmp_path / "broker" / "lepton.acl").read_text()
    assert "user worker_1\n" in acl and "topic write lepton/v1/model/+/manifest" in acl
    role = json.loads((tmp_path / "broker" / "dynsec.json").read_text())["roles"][0]
    assert role["rolename"] == "lepton-worker_1"
    assert {"acltype": "publishClientSend", "topic": "lepton/v1/model/+/manifest", "allow": True} in role["acls"]


@pytest.mark.parametrize("ident", ["cam+1", "cam#", "cam/1", "Cam-1", "c\u0430m-1", "-cam", "x" * 49, "a_b", ""])
def test_provision_rejects_invalid_ids_and_writes_nothing(tmp_path: Path, keys: Path, capsys, ident):
    capsys.readouterr()
    assert prov(tmp_path, keys, ident) == 2
    assert "invalid identity" in capsys.readouterr().err
    assert not (tmp_path / "broker").exists() and not (tmp_path / "out").exists()


def test_provision_refuses_to_repeat_without_force_and_force_rotates(tmp_path: Path, keys: Path):
    # Prepare
    assert prov(tmp_path, keys, "cam-1") == 0
    out = tmp_path / "out" / "cam-1"
    old_pw = tomllib.loads((out / "device.toml").read_text())["mqtt"]["password"]
    old_serial = x509.load_pem_x509_certificate((out / "client.crt").read_bytes()).serial_number
    # Execute
    again = prov(tmp_path, keys, "cam-1")
    forced = prov(tmp_path, keys, "cam-1", "--force")
    # Assert
    assert again == 2 and forced == 0
    assert tomllib.loads((out / "device.toml").read_text())["mqtt"]["password"] != old_pw
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "device-ca.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None
    assert (tmp_path / "broker" / "passwd").read_text().count("cam-1:") == 1


def test_provision_revoke_removes_password_and_revokes_certificate(tmp_path: Path, keys: Path):
    # Prepare
    assert prov(tmp_path, keys, "cam-1") == 0 and prov(tmp_path, keys, "cam-2") == 0
    serial = x509.load_pem_x509_certificate((tmp_path / "out" / "cam-1" / "client.crt").read_bytes()).serial_number
    # Execute
    rc = lepton(["provision", "cam-1", "--broker-dir", str(tmp_path / "broker"), "--revoke"])
    again = lepton(["provision", "cam-1", "--broker-dir", str(tmp_path / "broker"), "--revoke"])
    # Assert
    assert rc == 0 and again == 2
    users = [line.split(":")[0] for line in (tmp_path / "broker" / "passwd").read_text().splitlines()]
    assert users == ["cam-2"]
    crl = x509.load_pem_x509_crl((tmp_path / "broker" / "device-ca.crl").read_bytes())
    assert crl.get_revoked_certificate_by_serial_number(serial) is not None
    dynsec = json.loads((tmp_path / "broker" / "dynsec.json").read_text())
    assert [c["username"] for c in dynsec["clients"]] == ["cam-2"]
    assert [r["rolename"] for r in dynsec["roles"]] == ["lepton-cam-2"]


def test_provision_needs_the_signing_public_key(tmp_path: Path, capsys):
    capsys.readouterr()
    rc = lepton(["provision", "cam-1", "--broker-dir", str(tmp_path / "b"), "--signing-pub", str(tmp_path / "none.pub")])
    assert rc == 2 and "lepton keys init" in capsys.readouterr().err


def test_keys_tls_is_idempotent(tmp_path: Path):
    d = tmp_path / "broker"
    assert lepton(["keys", "tls", "--broker-dir", str(d), "--name", "mqtt.example"]) == 0
    ca = (d / "device-ca.crt").read_bytes()
    assert lepton(["keys", "tls", "--broker-dir", str(d)]) == 0
    assert (d / "device-ca.crt").read_bytes() == ca
    server = x509.load_pem_x509_certificate((d / "server.crt").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["mqtt.example"]


def test_device_bundle_is_a_valid_agent_config_once_a_source_is_added(tmp_path: Path, keys: Path):
    config = pytest.importorskip("edge_agent.config")
    from shared.process.config import load_config

    # Prepare
    assert prov(tmp_path, keys, "cam-1", "--task", "digits") == 0
    toml = tmp_path / "out" / "cam-1" / "device.toml"
    toml.write_text(toml.read_text() + '\n[source]\ntype = "replay"\n')
    # Execute
    cfg = load_config(config.AgentConfig, toml, environ={})
    # Assert
    assert cfg.device == "cam-1" and cfg.task == "digits" and cfg.mqtt.tls is not None
    assert cfg.model.public_key == (tmp_path / "out" / "cam-1" / "signing.pub").resolve()


@pytest.mark.parametrize(("listener", "port", "tls_keys"), [("mtls", 8883, {"ca", "cert", "key"}), ("tls", 8884, {"ca"}),
                                                             ("loopback", 1883, None)])
def test_provision_listener_choice_shapes_the_mqtt_settings(tmp_path: Path, keys: Path, listener, port, tls_keys):
    assert prov(tmp_path, keys, "cam-1", "--listener", listener) == 0
    cfg = tomllib.loads((tmp_path / "out" / "cam-1" / "device.toml").read_text())
    s = MqttSettings(**cfg["mqtt"])
    assert s.port == port
    assert (set(cfg["mqtt"]["tls"]) if s.tls else None) == tls_keys
