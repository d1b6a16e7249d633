"""Sources that fail loudly: one line and a non-zero exit when a source can never work, counted
retries with backoff for a live source that is down, counters in telemetry, refs numbered across
reconnects, no credentials in refs or logs, and a prompt stop while OpenCV is blocked."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import pytest

from edge_agent import config as C
from edge_agent.sources import Backoff, SourceUnavailable, open_source
from lepton_tasks import load_task
from shared.process.counters import Counters
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until
from tests.edge.streams import MjpegCamera, SilentServer

REPO = Path(__file__).resolve().parents[2]


def agent_process(tmp_path: Path, source: str, *extra: str, port: int = 9, **popen) -> subprocess.Popen:
    """lepton-agent as a user runs it; the broker port is closed unless given (MQTT just retries)."""
    from shared.security.signing import generate_keypair

    generate_keypair(tmp_path / "signing.key", tmp_path / "signing.pub")
    conf = tmp_path / "agent.toml"
    conf.write_text(f'device = "cam-1"\ntask = "digits"\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[mqtt]\nport = {port}\nbackoff_max = 0.5\n[model]\npublic_key = "{tmp_path / "signing.pub"}"\n'
                    f'[source]\n{source}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    return subprocess.Popen([sys.executable, "-m", "edge_agent", "--config", str(conf), *extra], env=env,
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)


@pytest.mark.parametrize("source,needle", [
    ('type = "folder"\npath = "{tmp}/no-such-dir"', "folder {tmp}/no-such-dir does not exist"),
    ('type = "video"\npath = "{tmp}/no-such.avi"', "video file {tmp}/no-such.avi does not exist"),
    ('type = "folder"\npath = "{tmp}"\npattern = "*.png"', "folder {tmp} has no files matching '*.png'"),
    ('type = "video"\npath = "{tmp}/junk.avi"', "cannot open {tmp}/junk.avi"),
])
def test_a_source_that_can_never_work_is_one_line_and_a_non_zero_exit(tmp_path, source, needle):
    (tmp_path / "junk.avi").write_text("not a video")
    proc = agent_process(tmp_path, source.format(tmp=tmp_path), "--duration", "30")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    # (the broker connection, closed here, has lines of its own)
    lines = [ln for ln in err.splitlines() if ln.strip() and " shared.transport.mqtt.connect: " not in ln]
    assert len(lines) == 1 and needle.format(tmp=tmp_path) in lines[0], err
    assert "Traceback" not in err


def test_unreadable_images_are_counted_and_named_once(tmp_path, caplog):
    img = load_task("digits").dataset().raw[0]
    cv2.imwrite(str(tmp_path / "a.png"), img)
    (tmp_path / "b.png").write_bytes(b"\x89PNG truncated")
    counters = Counters()
    cfg = C.FolderSource(type="folder", path=tmp_path, loop=True)
    stop = threading.Event()
    got = []
    with caplog.at_level(logging.WARNING, logger="edge_agent.sources"):
        for s in open_source(cfg, "digits", stop, counters):
            got.append(s.ref)
            if len(got) == 3:
                stop.set()
    assert got == ["a.png"] * 3
    assert counters.get("capture.unreadable") >= 2  # counted on every pass ...
    assert [r.getMessage() for r in caplog.records].count(f"skipping {tmp_path / 'b.png'}: not an image OpenCV can read") == 1


def test_a_folder_of_nothing_but_unreadable_files_cannot_work(tmp_path):
    (tmp_path / "b.png").write_bytes(b"garbage")
    with pytest.raises(SourceUnavailable, match="none of its 1 files"):
        list(open_source(C.FolderSource(type="folder", path=tmp_path), "digits", threading.Event()))


def test_backoff_doubles_to_its_ceiling_with_jitter_and_resets():
    b = Backoff(0.5, 4.0)
    delays = [b.next() for _ in range(6)]
    for d, nominal in zip(delays, (0.5, 1.0, 2.0, 4.0, 4.0, 4.0), strict=True):
        assert 0.75 * nominal <= d <= nominal
    b.reset()
    assert b.next() <= 0.5


def run_stream(cfg: C.StreamSource, counters: Counters, refs: list[str], stop: threading.Event) -> threading.Thread:
    def go() -> None:
        for s in open_source(cfg, "digits", stop, counters):
            refs.append(s.ref)

    t = threading.Thread(target=go, daemon=True)
    t.start()
    return t


def test_a_stream_outage_is_retried_counted_and_refs_keep_counting(caplog):
    cam = MjpegCamera(fps=30).start()
    counters, refs, stop = Counters(), [], threading.Event()
    cfg = C.StreamSource(type="stream", url=cam.url("viewer:s3cret"), reconnect_s=0.1, reconnect_max_s=0.4,
                         open_timeout_s=2, read_timeout_s=2)
    with caplog.at_level(logging.DEBUG, logger="edge_agent.sources"):
        t = run_stream(cfg, counters, refs, stop)
        try:
            wait_until(lambda: len(refs) >= 10, what="frames before the outage")
            cam.stop()
            wait_until(lambda: counters.get("capture.open_failed") >= 4, what="failed reconnect attempts")
            before = len(refs)
            cam.start()
            wait_until(lambda: len(refs) >= before + 10, what="frames after the outage")
        finally:
            stop.set()
            cam.stop()
            t.join(10)
    assert counters.get("capture.lost") == 1 and counters.get("capture.reconnects") == 1
    assert counters.get("capture.retries") == counters.get("capture.open_failed") >= 4
    numbers = [int(r.rsplit("#", 1)[1]) for r in refs]
    assert numbers == list(range(len(refs))), "refs restarted after the reconnect"
    text = "\n".join(r.getMessage() for r in caplog.records) + "\n".join(refs)
    assert "s3cret" not in text and "viewer" not in text
    # Logged on attempts 1, 2, 4, 8...: not once per attempt
    attempts = counters.get("capture.open_failed")
    warned = [r for r in caplog.records if r.levelno == logging.WARNING and "unavailable (attempt" in r.getMessage()]
    assert len(warned) == sum(1 for n in range(1, attempts + 1) if n & (n - 1) == 0)


def test_telemetry_carries_the_capture_counters(make_agent, collect, topics):
    silent_port = SilentServer()
    silent_port.close()  # a closed port: connection refused on every attempt
    agent = make_agent(start=False, source={"type": "stream", "url": f"http://127.0.0.1:{silent_port.port}/x.mjpg",
                                            "reconnect_s": 0.1, "reconnect_max_s": 0.2})
    col = collect(topics, agent.cfg.device)
    agent.start()
    tele = wait_until(lambda: [t for t in col.of(Kind.TELEMETRY) if t.counters.get("capture.open_failed", 0) >= 2],
                      what="telemetry with capture counters")
    assert tele[-1].counters["capture.retries"] >= 2 and not agent.errors


def test_stop_is_prompt_while_the_stream_server_never_answers(tmp_path):
    server = SilentServer()
    # A long open timeout: without a bounded stop, SIGTERM would wait for OpenCV to give up.
    proc = agent_process(tmp_path, f'type = "stream"\nurl = "http://127.0.0.1:{server.port}/x.mjpg"\n'
                                   'open_timeout_s = 120\nread_timeout_s = 120')
    try:
        assert server.accepted.wait(30), "the agent never connected to the stream"
        time.sleep(0.5)  # OpenCV is now inside its blocking open
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
        server.close()
    # lepton-agent.service gives it TimeoutStopSec=20 and compose stop_grace_period 20 s; the
    # agent's own deadline for a blocked capture is CAPTURE_JOIN_S on top of the usual teardown.
    assert proc.returncode == 0, err
    assert took < 10, f"SIGTERM took {took:.1f}s"
    assert "capture is blocked in the source; stopping without it" in err
