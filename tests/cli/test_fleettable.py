"""The live fleet table fits the terminal: at 80 columns the essential columns keep whole headers and
values (rendered by rich to a fixed-width console, as a terminal would show it), at 160 every column
is there with its long header; the lines below it are short and say what the worker is doing."""

from __future__ import annotations

import time

import pytest

from lepton_cli.fleettable import COLUMNS, caption_lines, worker_activity, worker_short
from lepton_cli.monitor import ConnectionState, table
from lepton_views.fleetview import FleetStats, truth_for
from shared.protocol import schemas
from shared.protocol.topics import Topics
from shared.protocol.wire import decode

T = Topics()
ESSENTIAL = ("device", "state", "model", "joint acc", "escal.")


def feed(stats: FleetStats, topic, msg) -> None:
    payload = schemas.dumps(msg)
    stats.feed(decode(T, str(topic), payload), len(payload))


def fleet(devices: list[str], *, model: bool = True, capture_lost: int = 0) -> FleetStats:
    """A fleet as the watcher sees it, from the messages agents and the worker publish."""
    s = FleetStats()
    for d in devices:
        feed(s, T.status(d), schemas.Status(device=d, state="online", boot=1, ts=time.time(),
                                             models={"digits": 12} if model else {}))
        feed(s, T.telemetry(d), schemas.Telemetry(
            device=d, boot=1, ts=time.time(), fps=10.0, latency_ms_p50=1.0, latency_ms_p99=2.0, uplink_bytes=123456,
            raw_bytes=1234567, outbox_depth=3, escalation_ratio=0.1, frames=12345, dropped_frames=0,
            counters={"capture.lost": capture_lost, "capture.reconnects": capture_lost}))
        if model:
            for i in range(40):
                feed(s, T.pred(d, "cam"), schemas.Prediction(
                    device=d, stream="cam", task="digits", sample=i, label=truth_for(f"digits:{i}"), confidence=0.9, source="edge",
                    model_version=12, escalated=i % 10 == 0, ref=f"digits:{i}", ts=time.time()))
    if model:
        s.manifests["digits"] = type("M", (), {"version": 12, "task": "digits", "metrics": {
            "accuracy": 0.9583, "holdout_n": 360.0, "macro_f1": 0.959, "cloud_acc": 0.9416, "joint_acc": 0.9583,
            "escalated": 0.0277, "defer": 1.0, "parity": 2.8e-06, "train_rows": 340.0}})()
    gauges = {"digits.version": 12.0, "digits.new_labels": 42.0} if model else {"infer_queue": 0.0}
    s.workers["worker-1"] = schemas.ServiceStatus(service="worker", id="worker-1", state="online", ts=0.0,
                                                  gauges=gauges, counters={"learn.trigger.labels": 3,
                                                                           "learn.candidates": 3})
    return s


def render(stats: FleetStats, width: int) -> str:
    from rich.console import Console

    console = Console(width=width, record=True, color_system=None, file=open("/dev/null", "w"))  # noqa: SIM115
    state = ConnectionState()
    state.connected = True
    console.print(table(stats, state))
    return console.export_text()


def header_and_rows(text: str) -> tuple[list[str], list[list[str]]]:
    lines = text.splitlines()
    cells = [[c.strip() for c in ln.strip("┃│").split("┃" if "┃" in ln else "│")] for ln in lines
             if ln.startswith(("┃", "│"))]
    return cells[0], cells[1:]


@pytest.mark.parametrize("devices", [["cam-1", "cam-2"], ["sensor-12", "sensor-13"], ["industrial-1"]])
def test_at_80_columns_the_essential_columns_are_whole(devices):
    text = render(fleet(devices), 80)
    assert max(len(ln) for ln in text.splitlines()) <= 80
    head, rows = header_and_rows(text)
    assert "…" not in text, text
    for name in ESSENTIAL:
        assert name in head, (name, head)
    assert rows[0][head.index("device")] == devices[0]
    assert rows[0][head.index("model")] == "v12" and rows[0][head.index("escal.")] == "10.0%"
    assert rows[0][head.index("joint acc")] == "1.000"


def test_at_160_columns_every_column_is_there_with_its_long_header():
    text = render(fleet(["cam-1", "cam-2"]), 160)
    head, rows = header_and_rows(text)
    assert "…" not in text
    assert head == [c.header for c in COLUMNS]
    assert rows[0][head.index("uplink/raw")] == "10.0%" and rows[0][head.index("preds")] == "40"


def test_a_device_with_capture_trouble_keeps_that_column_at_80():
    text = render(fleet(["industrial-1"], capture_lost=3), 80)
    head, rows = header_and_rows(text)
    assert "…" not in text and "cap.err" in head and rows[0][head.index("cap.err")] == "3"


def test_the_lines_below_are_short_and_say_what_the_model_is():
    text = render(fleet(["cam-1", "cam-2"]), 80)
    below = text.split("┘", 1)[1].strip().splitlines()
    assert below[0] == "digits v12 · holdout edge 0.958 cloud 0.942 joint 0.958 (n=360) · escalates 3%"
    assert below[1] == "worker-1: serving digits v12, 42 labels since the last retrain"
    assert all(len(ln) <= 80 for ln in below), below
    assert "parity" not in text and "train_rows" not in text


def test_before_v1_it_says_the_worker_is_training_it():
    s = fleet(["cam-1", "cam-2"], model=False)
    text = render(s, 80)
    head, rows = header_and_rows(text)
    assert rows[0][head.index("model")] == "none"
    assert "no model yet: worker-1 is training v1 from the seed set; agents start on v1" in text
    s.workers.clear()
    assert "no model yet: the worker is starting" in render(s, 80)


@pytest.mark.parametrize("status,short,says", [
    (None, "starting", "starting"),
    ({"state": "offline", "counters": {}, "gauges": {}}, "offline", "offline"),
    ({"state": "online", "counters": {}, "gauges": {"infer_queue": 0.0}}, "training_v1", "from the seed set"),
    ({"state": "online", "counters": {"learn.trigger.labels": 2, "learn.trigger.time": 1, "learn.candidates": 2},
      "gauges": {"digits.version": 3.0}}, "retraining", "training a candidate"),
    ({"state": "online", "counters": {"learn.trigger.labels": 2, "learn.candidates": 2},
      "gauges": {"digits.version": 3.0, "digits.new_labels": 7.0}}, "serving", "serving digits v3, 7 labels"),
])
def test_what_the_worker_is_doing_comes_from_its_status(status, short, says):
    assert worker_short(status) == short
    assert says in worker_activity(status)


def test_caption_without_any_status_says_so():
    s = FleetStats().summary()
    assert caption_lines(s)[:2] == ["no model yet: the worker is starting; agents start on v1", "hub: no status yet"]
