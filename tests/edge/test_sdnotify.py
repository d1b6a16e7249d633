"""systemd notify protocol: the agent says READY, feeds the watchdog from its inference loop, says STOPPING."""

from __future__ import annotations

import socket
import time

import pytest

from shared.process.sdnotify import SdNotifier


@pytest.fixture
def notify_socket(tmp_path):
    path = tmp_path / "notify.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    s.settimeout(0.2)
    yield path, s
    s.close()


def drain(s: socket.socket, until: float) -> list[str]:
    out = []
    while time.monotonic() < until:
        try:
            out.append(s.recv(256).decode())
        except TimeoutError:
            continue
    return out


def test_notifier_is_a_noop_outside_systemd():
    n = SdNotifier.from_env({})
    assert not n.enabled and not n.ready() and not n.ping() and n.sent == 0


def test_watchdog_pings_at_half_the_interval(notify_socket):
    path, s = notify_socket
    n = SdNotifier.from_env({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
    assert n.ready()
    assert n.ping(now=100.0) and not n.ping(now=100.9) and n.ping(now=101.0)
    assert drain(s, time.monotonic() + 0.3) == ["READY=1", "WATCHDOG=1", "WATCHDOG=1"]


def test_watchdog_for_another_pid_is_not_fed(notify_socket):
    path, _ = notify_socket
    n = SdNotifier.from_env({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000", "WATCHDOG_PID": "1"})
    assert n.enabled and n.interval is None and not n.ping()


def test_agent_reports_ready_feeds_watchdog_and_says_stopping(make_agent, notify_socket, monkeypatch):
    # Prepare: what systemd sets for Type=notify + WatchdogSec=0.4s
    path, s = notify_socket
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    # Execute: run an agent with no model and no frames for a second, then stop it
    agent = make_agent()
    seen = drain(s, time.monotonic() + 1.0)
    agent.stop()
    seen += drain(s, time.monotonic() + 0.3)
    # Assert: ready once, fed at least every 0.2 s even while idle, stopping at the end, and the
    # broker connection in the STATUS line
    status = [m for m in seen if m.startswith("STATUS=")]
    seen = [m for m in seen if not m.startswith("STATUS=")]
    assert seen[0] == "READY=1"
    assert seen.count("WATCHDOG=1") >= 3
    assert seen[-1] == "STOPPING=1"
    where = f"{agent.cfg.mqtt.host}:{agent.cfg.mqtt.port}"
    assert status == [f"STATUS=broker: connecting to {where}", f"STATUS=broker: connected to {where}"]


def test_status_is_one_line_and_none_follows_stopping(notify_socket):
    path, s = notify_socket
    n = SdNotifier.from_env({"NOTIFY_SOCKET": str(path)})
    assert n.status("cannot connect:\n  refused")
    assert n.stopping() and not n.status("late")
    assert drain(s, time.monotonic() + 0.3) == ["STATUS=cannot connect: refused", "STOPPING=1"]
