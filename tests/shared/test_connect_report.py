"""ConnectReport: what a client says about reaching its broker, and how often (a fake clock, no sockets)."""

from __future__ import annotations

import logging
import socket
import ssl

from shared.transport.connect_report import ConnectReport, connack_reason, socket_reason


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "shared.transport.mqtt.connect" and r.levelno >= logging.INFO]


def test_an_outage_is_announced_repeated_per_interval_and_its_end_said(caplog):
    # Prepare
    clock = Clock()
    r = ConnectReport("cam-1", "broker.local", 1883, tls=False, repeat_s=10.0, clock=clock)
    statuses: list[str] = []
    r.hooks.append(statuses.append)
    # Execute: 30 failures 0.5 s apart (15 s), one reason change, then success
    with caplog.at_level(logging.DEBUG, logger="shared.transport.mqtt.connect"):
        for i in range(30):
            r.connecting()
            r.failed("connection refused" if i != 25 else "no answer within 5 s (timed out)", 0.5)
            clock.t += 0.5
        r.connected()
    # Assert: the first failure, the one 10 s later, the changed reason, the one after it; then the end
    assert _lines(caplog) == [
        "cam-1: connecting to broker.local:1883",
        "cam-1: cannot connect to broker.local:1883: connection refused; retrying in 0.5 s",
        "cam-1: cannot connect to broker.local:1883: connection refused; retrying in 0.5 s (21 attempts over 10 s)",
        "cam-1: cannot connect to broker.local:1883: no answer within 5 s (timed out); retrying in 0.5 s "
        "(26 attempts over 12 s)",
        "cam-1: cannot connect to broker.local:1883: connection refused; retrying in 0.5 s (27 attempts over 13 s)",
        "cam-1: connected to broker.local:1883 after 30 failed attempts over 15 s",
    ]
    assert len([r for r in caplog.records if r.levelno == logging.DEBUG]) == 26  # the others, for --log-level DEBUG
    assert statuses[0] == "connecting to broker.local:1883"
    assert statuses[-2].startswith("cannot connect to broker.local:1883: connection refused; retrying in 0.5 s")
    assert statuses[-1] == r.status == "connected to broker.local:1883"


def test_a_lost_connection_is_announced_again_and_a_first_connect_says_so_plainly(caplog):
    r = ConnectReport("svc", "h", 1, tls=True, repeat_s=10.0, clock=Clock())
    with caplog.at_level(logging.INFO, logger="shared.transport.mqtt.connect"):
        r.connecting()
        r.connected()
        r.lost("Unspecified error")
        lost = r.status
        r.connecting()
        r.connected()
    assert lost == "connection to h:1 (TLS) lost (Unspecified error); reconnecting"
    assert _lines(caplog) == ["svc: connecting to h:1 (TLS)", "svc: connected to h:1 (TLS)"] * 2


def test_a_failing_hook_does_not_stop_the_report():
    r = ConnectReport("svc", "h", 1, tls=False, repeat_s=10.0, clock=Clock())
    seen: list[str] = []
    r.hooks.extend([lambda s: 1 / 0, seen.append])
    r.connecting()
    assert seen == ["connecting to h:1"]


def test_socket_and_broker_reasons_in_words():
    assert socket_reason(socket.gaierror(-2, "Name or service not known"), "nonexistent.invalid", 5) == \
        "cannot resolve host 'nonexistent.invalid' (Name or service not known)"
    assert socket_reason(ConnectionRefusedError(111, "Connection refused"), "h", 5).startswith("connection refused")
    assert socket_reason(TimeoutError("timed out"), "h", 2.5) == "no answer within 2.5 s (timed out)"
    assert socket_reason(ConnectionResetError(104, "Connection reset by peer"), "h", 5, tls=True).startswith(
        "TLS error: the broker dropped the TLS handshake")
    assert socket_reason(ssl.SSLError(1, "[SSL] wrong version number"), "h", 5).startswith("TLS error")
    assert socket_reason(OSError(113, "No route to host"), "h", 5) == "No route to host"
    assert connack_reason(0x86, "Bad user name or password") == (
        "refused by the broker: Bad user name or password (bad credentials: check mqtt.username and mqtt.password)")
    assert connack_reason(0x9F, "Connection rate exceeded") == "refused by the broker: Connection rate exceeded"
