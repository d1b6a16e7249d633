"""A client that cannot reach its broker says why, in words, from what TLS, the socket or the broker gave.

Real failures against the session's secure mosquitto (mosquitto/secure.conf): a wrong password, a
broker certificate from an unknown CA, a plain client on the TLS port and a TLS client on the plain one.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from lepton_cli.pki import cert_pem, make_ca
from shared.transport.mqtt import MqttClient, TlsSettings
from tests.security.conftest import SecureEnv

REASONS = {
    "wrong_password": "refused by the broker: Not authorized (bad credentials",
    "unknown_ca": "TLS error: the broker's certificate was not accepted (unable to get local issuer certificate)",
    "plain_to_tls_port": "the broker closed the connection before answering (a TLS port?",
    "tls_to_plain_port": "TLS error: the broker dropped the TLS handshake",
}


def _failed_attempts(c: MqttClient) -> int:
    return c.counters.get("mqtt.connect_failures") + c.counters.get("mqtt.connect_refused")


@pytest.mark.parametrize("case", sorted(REASONS))
def test_each_failure_is_reported_with_its_reason_once_per_interval(secure_env: SecureEnv, connect, tmp_path: Path,
                                                                     caplog, case):
    # Prepare
    other, _ = make_ca("Some other CA")
    (tmp_path / "other.crt").write_bytes(cert_pem(other))
    ca = secure_env.bundle("worker_1") / "ca.crt"
    # Execute: retries every 0.05-0.5 s, a line at most every 10 s
    with caplog.at_level(logging.INFO, logger="shared.transport.mqtt.connect"):
        if case == "wrong_password":
            c = connect("d1", wait=False, password="not-it")
        elif case == "unknown_ca":
            c = connect("worker_1", "tls", wait=False, tls=TlsSettings(ca=tmp_path / "other.crt"))
        elif case == "plain_to_tls_port":
            c = connect("worker_1", "password", wait=False, port=secure_env.broker.tls_port)
        else:
            c = connect("worker_1", "tls", wait=False, port=secure_env.broker.port, tls=TlsSettings(ca=ca))
        deadline = time.monotonic() + 15
        while _failed_attempts(c) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        status = c.report.status
    # Assert
    assert _failed_attempts(c) >= 5 and not c.connected
    assert status.startswith(f"cannot connect to {c.report.where}: {REASONS[case]}"), status
    assert "retrying in" in status
    lines = [r.getMessage() for r in caplog.records if r.name == "shared.transport.mqtt.connect" and r.levelno == logging.INFO]
    failures = [m for m in lines if "cannot connect" in m]
    assert lines[0] == f"{c.client_id}: connecting to {c.report.where}"
    assert len(failures) == 1 and REASONS[case] in failures[0], lines
