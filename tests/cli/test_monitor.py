"""`lepton monitor` where people use it: in a file, in a pipe that closes, with a broker that goes away;
and the fleet view's figures (integers as integers, two kinds of refusal, capture errors)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time

import pytest

from lepton_cli.monitor import ConnectionState, status_line, table
from lepton_views.fleetview import FleetStats
from shared.protocol import schemas
from shared.protocol.topics import Topics
from shared.protocol.wire import decode

pytestmark = pytest.mark.broker
T = Topics()


def monitor(port: int, *args: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    return subprocess.Popen([sys.executable, "-m", "lepton_cli.main", "monitor", "--port", str(port), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def lines_of(stream) -> queue.Queue:
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for line in stream:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def wait_line(q: queue.Queue, needle: str, timeout: float = 20.0) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = q.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if line is None:
            break
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r} within {timeout}s")


def telemetry(device: str = "cam-1", **counters: int) -> schemas.Telemetry:
    return schemas.Telemetry(device=device, boot=1, ts=time.time(), fps=5.0, latency_ms_p50=1.0, latency_ms_p99=2.0,
                             uplink_bytes=100, raw_bytes=400, outbox_depth=0, escalation_ratio=0.1, frames=10,
                             dropped_frames=0, counters=counters)


def test_off_a_terminal_it_prints_plain_lines_and_says_when_the_broker_is_gone(fresh_broker, mqtt_factory):
    proc = monitor(fresh_broker.port, "--print-every", "0.3")
    try:
        out = lines_of(proc.stdout)
        first = wait_line(out, "broker=connected")
        assert first.startswith("[") and "preds=0" in first
        pub = mqtt_factory(target=fresh_broker)
        pub.publish(T.telemetry("cam-1"), schemas.dumps(telemetry(**{"capture.open_failed": 3,
                                                                     "capture.reconnects": 1})), qos=1)
        wait_line(out, "capture_errors=3 reconnects=1")
        fresh_broker.stop()
        wait_line(out, "broker=DISCONNECTED_since_")
    finally:
        proc.terminate()
        proc.wait(10)


def test_raw_into_a_pipe_that_closes_ends_quietly(broker, mqtt_factory):
    pub = mqtt_factory()
    stop = threading.Event()

    def flood() -> None:
        while not stop.is_set():
            pub.publish(T.telemetry("cam-9"), schemas.dumps(telemetry("cam-9")), qos=0)
            time.sleep(0.005)

    proc = monitor(broker.port, "--raw")
    flooder = threading.Thread(target=flood, daemon=True)
    flooder.start()
    try:
        assert proc.stdout.readline().startswith("lepton/v1/edge/cam-9/telemetry ")  # what `| head -1` reads
        proc.stdout.close()  # ... and then head exits
        rc = proc.wait(15)
        err = proc.stderr.read()
    finally:
        stop.set()
        flooder.join(5)
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err
    assert "Traceback" not in err and "BrokenPipe" not in err


def feed(stats: FleetStats, topic, msg) -> None:
    payload = schemas.dumps(msg)
    stats.feed(decode(T, str(topic), payload), len(payload))


def test_figures_print_as_what_they_are():
    from rich.console import Console

    s = FleetStats()
    manifest_metrics = {"accuracy": 0.9416, "holdout_n": 360.0, "train_rows": 393.0}
    s.manifests["digits"] = type("M", (), {"version": 3, "metrics": manifest_metrics, "task": "digits"})()
    s.workers["worker-1"] = schemas.ServiceStatus(service="worker", id="worker-1", state="online", ts=0.0,
                                                  counters={"learn.rejected": 4, "learn.published": 2, "learn.trigger.labels": 7,
                                                            "learn.candidates": 6}, gauges={"digits.version": 3.0})
    feed(s, T.model_state("cam-1"), schemas.ModelState(device="cam-1", task="digits", state="rejected", version=2,
                                                       offered=3, reason="bad_signature: x", ts=1.0))
    feed(s, T.telemetry("cam-1"), telemetry(**{"capture.lost": 2, "capture.unreadable": 1, "capture.reconnects": 2}))
    summary = s.summary()
    assert summary["models"]["digits"]["metrics"] == {"accuracy": 0.9416, "holdout_n": 360, "train_rows": 393}
    assert (summary["gate_refusals"], summary["agent_model_rejections"]) == (4, 1)
    assert (summary["capture_errors"], summary["capture_reconnects"]) == (3, 2)
    console = Console(width=200, record=True)
    lost = ConnectionState()
    lost.since = time.time()
    console.print(table(s, lost))
    text = console.export_text()
    assert "digits v3 · holdout edge 0.942 (n=360)" in text and "360.000" not in text
    assert "joint acc (last 200)" in text and "capture err" in text and "reconnects" in text
    assert "worker-1: training a candidate" in text and "gate refused 4" in text
    assert "agents rejected 1 model(s)" in text
    assert "DISCONNECTED since" in text
    line = status_line(s, lost)
    assert "gate_refusals=4 agent_rejections=1" in line and "capture_errors=3 reconnects=2" in line
