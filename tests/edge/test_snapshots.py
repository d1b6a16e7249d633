"""Event snapshots: published when due, shed by reason otherwise, and refused by the wire when hostile."""

from __future__ import annotations

import numpy as np
import pytest

from edge_agent.config import SnapshotSettings
from edge_agent.snapshots import Snapshots, is_frame
from shared.process.counters import Counters
from shared.protocol import rawsample
from shared.protocol.topics import Topics
from shared.protocol.wire import WireError, decode


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def _frame(seed: int = 0, side: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (side, side, 3), dtype=np.uint8)


def _snapshots(backlog: int = 0, **cfg):
    sent: list[tuple[str, bytes]] = []
    clock, counters = Clock(), Counters()
    s = Snapshots(SnapshotSettings(**cfg), counters, lambda cls, b: sent.append((cls, b)) or True,
                  backlog=lambda: backlog, clock=clock)
    return s, sent, counters, clock


def test_an_event_with_its_frame_sends_a_jpeg_and_the_next_within_the_interval_is_shed():
    s, sent, counters, clock = _snapshots(min_interval_s=10)
    assert s.on_event("person", 1, _frame())
    assert sent[0][0] == "person" and rawsample.jpeg_dims(sent[0][1])[:2] == (64, 64)
    clock.t += 9.9
    assert not s.on_event("person", 2, _frame(1))
    assert s.on_event("car", 3, _frame(2))  # the interval is per class
    clock.t += 0.2
    assert s.on_event("person", 4, _frame(3))
    assert [c for c, _ in sent] == ["person", "car", "person"]
    assert counters.snapshot().get("snapshot.shed.rate") == 1


def test_alerts_and_escalations_waiting_in_the_outbox_go_first():
    s, sent, counters, _ = _snapshots(backlog=3)
    assert not s.on_event("person", 1, _frame())
    assert not sent and counters.snapshot()["snapshot.shed.backlog"] == 1


def test_a_cloud_decided_event_uses_the_jpeg_its_escalation_carried_and_none_without_it():
    s, sent, counters, _ = _snapshots(min_interval_s=0)
    jpeg = rawsample.encode(_frame(), "jpeg", 60).tobytes()
    s.keep(7, jpeg)
    assert s.on_event("person", 7, None) and sent[-1][1] == jpeg
    assert not s.on_event("person", 8, None)  # nothing kept for sample 8, no frame at hand
    assert counters.snapshot()["snapshot.shed.no_frame"] == 1
    s.keep(9, jpeg)
    s.forget(9)  # the answer said: no alert
    assert not s.on_event("person", 9, None)


def test_a_frame_over_the_bound_is_re_encoded_smaller_then_dropped():
    noisy = _frame(side=512)  # noise barely compresses: ~230 KB at q90, ~110 KB at q50, ~75 KB at q30
    s, sent, counters, _ = _snapshots(max_bytes=150 * 1024, quality=90, min_interval_s=0)
    assert s.on_event("person", 1, noisy)  # q50 fits
    assert len(sent[-1][1]) <= 150 * 1024
    s2, sent2, counters2, _ = _snapshots(max_bytes=4096, min_interval_s=0)
    assert not s2.on_event("person", 1, noisy) and not sent2
    assert counters2.snapshot()["snapshot.shed.too_large"] == 1


def test_windows_are_not_frames_and_disabled_snapshots_send_nothing():
    assert is_frame(_frame()) and not is_frame(np.zeros((1, 140), np.float32))
    s, sent, _, _ = _snapshots(enabled=False)
    s.keep(1, b"x")
    assert not s.on_event("person", 1, _frame()) and not sent
    s2, sent2, c2, _ = _snapshots()
    assert not s2.on_event("anomaly", 1, np.zeros((1, 140), np.float32))
    assert c2.snapshot()["snapshot.shed.no_frame"] == 1


@pytest.mark.parametrize("payload,reason", [
    (b"", "empty"),
    (b"GIF89a" + b"\0" * 100, "undecodable"),
    (b"\xff\xd8\xff" + b"\0" * 10, "undecodable"),  # a JPEG start, truncated before any frame header
    (b"\xff\xd8" + b"\xff\xe0\x00\x10" + b"\0" * (300 * 1024), "oversized"),
])
def test_the_wire_refuses_a_hostile_snapshot_with_a_typed_reason(payload, reason):
    t = Topics()
    with pytest.raises(WireError) as ei:
        decode(t, str(t.snapshot("cam-1", "front", "person")), payload)
    assert ei.value.reason == reason


def test_the_wire_takes_a_real_snapshot_and_its_topic_names_device_stream_and_class():
    t = Topics()
    jpeg = rawsample.encode(_frame(), "jpeg", 70).tobytes()
    d = decode(t, str(t.snapshot("cam-1", "front", "person")), jpeg)
    assert d.value == jpeg and (d.topic.device, d.topic.stream, d.topic.name) == ("cam-1", "front", "person")
