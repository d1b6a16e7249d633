"""Who gets in: passwords, client certificates, server verification, session takeover, revocation."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from lepton_cli.main import main as lepton
from lepton_cli.pki import BrokerPki, cert_pem, issue, make_ca
from lepton_cli.secure_broker import SecureBroker
from shared.process.counters import Counters
from shared.protocol.containers import FeatureBatch
from shared.protocol.dedup import Deduper
from shared.protocol.topics import Filter
from shared.protocol.wire import Receiver
from shared.transport.mqtt import MqttClient, TlsSettings

from .conftest import Inbox, SecureEnv, never_connects, provision, publish_ack

pytestmark = pytest.mark.broker

NOT_AUTHORIZED = 0x87


def write_client(tmp: Path, cert, key) -> TlsSettings:
    from cryptography.hazmat.primitives import serialization

    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "c.crt").write_bytes(cert_pem(cert))
    (tmp / "c.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))
    return TlsSettings(ca=tmp / "ca.crt", cert=tmp / "c.crt", key=tmp / "c.key")


def test_client_id_takeover_does_not_disconnect_the_real_device(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    victim = connect("d1", client_id="d1")
    # Execute: d2 (valid credentials of its own) and d1's client id
    attacker = connect("d2", client_id="d1")
    attacker_code = publish_ack(attacker, t.status("d1"), b"spoof")
    victim_code = publish_ack(victim, t.status("d1"), b"still here")
    # Assert
    assert victim.connected and victim.counters.snapshot().get("mqtt.disconnects", 0) == 0
    assert victim_code < 0x80
    assert attacker_code == NOT_AUTHORIZED  # the broker sees the attacker as d2, whatever id it claims


def test_a_second_connection_of_the_same_identity_replaces_the_first(secure_env: SecureEnv, connect):
    # Prepare: why every MQTT connection of a service needs an identity of its own
    first = connect("worker_1", client_id="worker-hi")
    disconnected = threading.Event()
    first.on_disconnect_hooks.append(disconnected.set)
    # Execute
    connect("worker_1", client_id="worker-bulk")
    # Assert
    assert disconnected.wait(5), "the broker kept two sessions for one identity"


@pytest.mark.parametrize("case", ["wrong_password", "unknown_user", "anonymous"])
def test_bad_passwords_are_refused(secure_env: SecureEnv, connect, case):
    # Prepare
    over = {"wrong_password": {"password": "not-it"}, "unknown_user": {"username": "d9", "password": "x"},
            "anonymous": {"username": None, "password": None}}[case]
    # Execute
    c = connect("d1", wait=False, **over)
    # Assert
    assert never_connects(c)
    assert c.counters.get("mqtt.connect_refused") >= 1
    assert c.last_connect_error in ("Not authorized", "Bad user name or password")


def test_device_certificate_logs_in_as_its_cn_whatever_username_it_sends(secure_env: SecureEnv, connect):
    # Prepare
    t = secure_env.topics
    # Execute
    d1 = connect("d1", "mtls", username="d2", password="anything")
    own, other = publish_ack(d1, t.status("d1")), publish_ack(d1, t.status("d2"))
    # Assert
    assert own < 0x80 and other == NOT_AUTHORIZED


def test_service_password_over_tls_works(secure_env: SecureEnv, connect):
    worker = connect("worker_1", "tls")
    assert publish_ack(worker, secure_env.topics.manifest("digits"), b"m") < 0x80


def test_device_certificate_bundle_passes_the_mtls_listener(secure_env: SecureEnv, connect):
    assert connect("d2", "mtls").connected


@pytest.mark.parametrize("case", ["no_certificate", "unknown_ca", "server_ca_signed", "expired", "not_yet_valid"])
def test_bad_client_certificates_are_refused(secure_env: SecureEnv, connect, tmp_path: Path, case):
    # Prepare
    pki = BrokerPki(secure_env.broker_dir)
    (tmp_path / "ca.crt").write_bytes(pki.server_ca.read_bytes())
    now = dt.datetime.now(dt.timezone.utc)
    if case == "no_certificate":
        tls = TlsSettings(ca=tmp_path / "ca.crt")
    elif case == "unknown_ca":
        ca, ca_key = make_ca("Evil CA")
        tls = write_client(tmp_path, *issue(ca, ca_key, "d1", server=False))
    elif case == "server_ca_signed":
        ca, ca_key = pki._load("server-ca")
        tls = write_client(tmp_path, *issue(ca, ca_key, "d1", server=False))
    else:
        ca, ca_key = pki._load("device-ca")
        window = ((now - dt.timedelta(days=30), now - dt.timedelta(days=1)) if case == "expired"
                  else (now + dt.timedelta(days=1), now + dt.timedelta(days=30)))
        tls = write_client(tmp_path, *issue(ca, ca_key, "d1", server=False, not_before=window[0], not_after=window[1]))
    # Execute
    c = connect("d1", "mtls", wait=False, tls=tls)
    # Assert
    assert never_connects(c)


def test_client_refuses_a_broker_it_cannot_verify(secure_env: SecureEnv, connect, tmp_path: Path):
    # Prepare: the client trusts another CA than the one that signed the broker's certificate
    other, _ = make_ca("Some other CA")
    (tmp_path / "other.crt").write_bytes(cert_pem(other))
    b = secure_env.bundle("worker_1")
    # Execute
    c = connect("worker_1", "tls", wait=False, tls=TlsSettings(ca=tmp_path / "other.crt"))
    d = connect("d1", "mtls", wait=False, tls=TlsSettings(ca=tmp_path / "other.crt", cert=secure_env.bundle("d1") /
                                                           "client.crt", key=secure_env.bundle("d1") / "client.key"))
    # Assert
    assert never_connects(c) and never_connects(d, 0.5)
    assert "CERTIFICATE_VERIFY_FAILED" in (c.last_connect_error or "")
    assert (b / "ca.crt").exists()


def _wait_disconnected(c: MqttClient, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not c.connected:
            return True
        time.sleep(0.05)
    return False


def test_revoked_identity_is_locked_out_by_reload_and_restart(secure_env: SecureEnv, tmp_path: Path):
    # Prepare: two identities of this test's own, live on a broker of its own over the same files
    pw_ident, cert_ident = (f"rev-{uuid.uuid4().hex[:6]}" for _ in range(2))
    assert provision(secure_env.base, pw_ident) == 0 and provision(secure_env.base, cert_ident) == 0
    broker = SecureBroker(tmp_path / "run", secure_env.broker_dir).start()
    clients: list[MqttClient] = []

    def client(ident: str, listener: str) -> MqttClient:
        port = {"password": broker.port, "mtls": broker.mtls_port}[listener]
        c = MqttClient(secure_env.settings(ident, listener, port=port), client_id=ident)
        clients.append(c)
        return c.start()

    try:
        live_pw, live_cert = client(pw_ident, "password"), client(cert_ident, "mtls")
        assert live_pw.wait_connected(5) and live_cert.wait_connected(5)
        # Execute
        for ident in (pw_ident, cert_ident):
            assert lepton(["provision", ident, "--broker-dir", str(secure_env.broker_dir), "--revoke"]) == 0
        broker.reload()
        pw_kicked = _wait_disconnected(live_pw, 5)
        new_cert = client(cert_ident, "mtls")
        new_cert_refused = never_connects(new_cert, 1.5)
        cert_live_after_reload = live_cert.connected
        broker.restart()
        # Assert
        assert pw_kicked, "SIGHUP should re-check live password clients against the new password file"
        assert new_cert_refused, "SIGHUP should load the new CRL for new TLS connections"
        assert cert_live_after_reload, "documented: a live TLS session survives SIGHUP; restart drops it"
        assert never_connects(live_cert, 1.5) and never_connects(live_pw, 0.2)
    finally:
        for c in clients:
            c.stop()
        broker.stop()


def test_new_identity_gets_its_rights_at_restart_not_at_reload(secure_env: SecureEnv, tmp_path: Path):
    # Prepare: a broker started before the identity exists (the plugin reads dynsec.json at start)
    ident = f"new-{uuid.uuid4().hex[:6]}"
    broker = SecureBroker(tmp_path / "run", secure_env.broker_dir).start()
    clients: list[MqttClient] = []

    def own_codes() -> tuple[int, list[int]]:
        c = MqttClient(secure_env.settings(ident, "password", port=broker.port), client_id=ident)
        clients.append(c)
        assert c.start().wait_connected(5), c.last_connect_error
        pub = publish_ack(c, secure_env.topics.status(ident), b"hello")
        sub = c.subscribe_and_wait(Filter(str(secure_env.topics.reply(ident))), 1)
        c.stop()
        return pub, sub

    try:
        # Execute
        assert provision(secure_env.base, ident) == 0
        broker.reload()
        after_reload = own_codes()  # passwd is re-read (it logs in), the plugin's roles are not
        broker.restart()
        after_restart = own_codes()
        # Assert
        assert after_reload == (NOT_AUTHORIZED, [NOT_AUTHORIZED]), "documented: SIGHUP does not reload dynsec.json"
        assert after_restart[0] < 0x80 and after_restart[1] == [1]
    finally:
        for c in clients:
            c.stop()
        broker.stop()
        assert lepton(["provision", ident, "--broker-dir", str(secure_env.broker_dir), "--revoke"]) == 0


def _batch(device: str, seq: int) -> FeatureBatch:
    n = 4
    return FeatureBatch(device=device, stream="cam", task="digits", boot=7, seq=seq, model_version=1,
                        sample=np.arange(n, dtype=np.int64), feat=np.ones((n, 8), np.float32),
                        scores=np.full((n, 10), 0.1, np.float32), ts=np.zeros(n))


def test_replayed_feature_message_is_dropped_by_the_dedup_key(secure_env: SecureEnv, connect):
    # Prepare: the bridge's receive path (wire decode + identity check + Deduper)
    t = secure_env.topics
    d1, d2, bridge = connect("d1"), connect("d2"), connect("bridge_1")
    counters, dedup, kept = Counters(), Deduper(), []

    def on_value(decoded, msg):
        v = decoded.value
        if dedup.first_time(v.device, v.boot, v.seq):
            kept.append((v.device, v.seq))
        else:
            counters.inc("dropped.duplicate")

    receiver, inbox = Receiver(t, on_value, counters), Inbox()

    def handler(msg):
        receiver(msg)
        inbox(msg)

    bridge.subscribe_and_wait(t.edge_tree(), 1, handler)
    captured = _batch("d1", 1).encode()
    # Execute: the original, a replay by the device itself, a replay by d2 into d1's tree and into its own
    assert publish_ack(d1, t.feat("d1", "cam"), captured) < 0x80
    assert publish_ack(d1, t.feat("d1", "cam"), captured) < 0x80
    into_d1 = publish_ack(d2, t.feat("d1", "cam"), captured)
    assert publish_ack(d2, t.feat("d2", "cam"), captured) < 0x80
    assert publish_ack(d1, t.feat("d1", "cam"), _batch("d1", 2).encode()) < 0x80
    # Assert
    assert inbox.wait_for(lambda ms: len(ms) >= 4)
    assert into_d1 == NOT_AUTHORIZED
    assert kept == [("d1", 1), ("d1", 2)]
    snap = counters.snapshot()
    assert snap.get("dropped.duplicate") == 1 and snap.get("rejected.feat.topic_mismatch") == 1
