"""Pure parts: feature batching, pending escalations, model store, manifest checks."""

import hashlib
import json
import time

import numpy as np
import pytest

from edge_agent.batching import FeatureBatcher
from edge_agent.pending import PendingTable
from edge_agent.store import ModelStore
from edge_agent.verify import Rejection, check_artifact, parse_manifest
from shared.protocol.topics import Topics
from shared.security.signing import generate_keypair, load_private, load_public
from tests.edge.models import release

T = Topics("lepton/v1/unit")


def test_batcher_flushes_on_count_age_and_model_change():
    b = FeatureBatcher(batch_size=3, max_age_s=5.0)
    f, s = np.ones(4), np.full(2, 0.5)
    assert b.add(1, f, s, 1.0, 1, now=0.0) == [] and b.add(2, f, s, 1.0, 1, now=0.1) == []
    (full,) = b.add(3, f, s, 1.0, 1, now=0.2)
    assert full.sample.tolist() == [1, 2, 3] and full.feat.shape == (3, 4) and full.model_version == 1
    b.add(4, f, s, 1.0, 1, now=1.0)
    assert b.due(5.9) is None
    assert b.due(6.0).sample.tolist() == [4]
    b.add(5, f, s, 1.0, 1, now=7.0)
    (closed,) = b.add(6, f, s, 1.0, 2, now=7.1)
    assert closed.sample.tolist() == [5] and closed.model_version == 1
    assert b.flush().model_version == 2 and b.flush() is None


def test_pending_resolves_each_entry_exactly_once():
    p: PendingTable[str] = PendingTable(max_pending=10)
    p.add(1, "a", deadline=10.0)
    p.add(2, "b", deadline=20.0)
    assert p.pop(1) == "a" and p.pop(1) is None
    assert p.expired(15.0) == []
    assert p.next_deadline() == 20.0
    assert p.expired(20.0) == ["b"] and p.pop(2) is None and len(p) == 0


def test_pending_evicts_oldest_beyond_capacity():
    p: PendingTable[int] = PendingTable(max_pending=2)
    assert p.add(1, 1, 5.0) == [] and p.add(2, 2, 5.0) == []
    assert p.add(3, 3, 5.0) == [1]
    assert sorted(p.drain()) == [2, 3]


def test_store_persists_highest_before_switch_and_boot_is_strictly_increasing(tmp_path):
    s = ModelStore(tmp_path).open()
    assert s.next_boot(100) == 100 and s.next_boot(100) == 101 and s.next_boot(50) == 102
    s.write(1, b"one", b"{}")
    s.accept(1)
    s.switch(1)
    s.write(2, b"two", b"{}")
    s.accept(2)
    s.switch(2)
    s.write(3, b"three", b"{}")
    s.accept(3)
    s.switch(3)
    again = ModelStore(tmp_path).open()
    assert (again.state.highest, again.state.current, again.state.previous) == (3, 3, 2)
    assert sorted(p.name for p in tmp_path.glob("v*.onnx")) == ["v2.onnx", "v3.onnx"]
    again.rolled_back()
    assert (again.state.current, again.state.previous, again.state.highest) == (2, None, 3)


def test_corrupt_store_state_is_set_aside_not_fatal(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    s = ModelStore(tmp_path).open()
    assert s.state.highest == 0 and (tmp_path / "state.json.corrupt").exists()


def check(raw, highest=0, key=None, now=None):
    return parse_manifest(raw, task="digits", highest=highest, public_key=key, topics=T,
                          now=time.time() if now is None else now, max_artifact_bytes=1 << 20)


def reason(raw, **kw) -> str:
    with pytest.raises(Rejection) as ei:
        check(raw, **kw)
    return ei.value.reason


def test_manifest_checks_each_reason(tmp_path):
    generate_keypair(tmp_path / "k", tmp_path / "k.pub")
    generate_keypair(tmp_path / "o", tmp_path / "o.pub")
    key, other = load_private(tmp_path / "k"), load_private(tmp_path / "o")
    pub = load_public(tmp_path / "k.pub")
    good = release(T, "digits", 3, key=key)
    assert check(good.wire, key=pub).version == 3
    assert reason(b"") == "empty"
    assert reason(b"\xff\x00garbage") == "not_json"
    assert reason(b"[1,2]") == "not_json"
    assert reason(release(T, "digits", 3, task_field="health").wire) == "other_task"
    assert reason(good.wire, highest=3) == "not_newer"
    assert reason(release(T, "digits", 3, key=other).wire, key=pub) == "bad_signature"
    assert reason(release(T, "digits", 3).wire, key=pub) == "bad_signature"  # unsigned
    tampered = json.loads(good.wire)
    tampered["tolerance"] = 0.5
    assert reason(json.dumps(tampered).encode(), key=pub) == "bad_signature"
    bad = json.loads(release(T, "digits", 3).wire)
    bad["sha256"] = "nothex"
    assert reason(json.dumps(bad).encode()) == "invalid"
    assert reason(release(T, "digits", 3, expires_in=10, created=time.time() - 100).wire) == "expired"
    assert reason(release(T, "digits", 3, size=2 << 20).wire) == "too_large"
    wrong_topic = json.loads(release(T, "digits", 3).wire)
    wrong_topic["artifact"] = "lepton/v1/unit/model/digits/artifact/2"
    assert reason(json.dumps(wrong_topic).encode()) == "bad_artifact_topic"


def test_artifact_checks_size_and_hash():
    rel = release(T, "digits", 1)
    check_artifact(rel.onnx, rel.manifest)
    with pytest.raises(Rejection) as ei:
        check_artifact(rel.onnx + b"x", rel.manifest)
    assert ei.value.reason == "oversized"
    flipped = bytearray(rel.onnx)
    flipped[-1] ^= 1
    with pytest.raises(Rejection) as ei:
        check_artifact(bytes(flipped), rel.manifest)
    assert ei.value.reason == "bad_hash"
    assert hashlib.sha256(rel.onnx).hexdigest() == rel.manifest.sha256


def test_signed_model_with_external_data_is_rejected_before_onnxruntime(tmp_path):
    # Prepare: a correctly hashed artifact whose weights point at a file beside the model
    import onnx

    rel = release(T, "digits", 1)
    m = onnx.load_from_string(rel.onnx)
    onnx.save_model(m, tmp_path / "m.onnx", save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.data", size_threshold=0)
    data = (tmp_path / "m.onnx").read_bytes()
    manifest = rel.manifest.model_copy(update={"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)})
    # Execute / Assert
    with pytest.raises(Rejection) as ei:
        check_artifact(data, manifest)
    assert ei.value.reason == "onnx_external_data"


def test_every_escalation_ends_once_whatever_races_it():
    from edge_agent.config import DecisionSettings
    from edge_agent.escalations import Escalations, Pending
    from shared.process.counters import Counters
    from shared.protocol.schemas import Reply
    from shared.protocol.wire import Decoded
    from shared.transport.mqtt import Message

    ended: list[tuple[int, str, int]] = []
    c = Counters()
    esc = Escalations(DecisionSettings(max_pending=2, reply_deadline_s=1.0), "digits", c,
                      lambda p, source, label, conf: ended.append((p.sample, source, label)), lambda: ("a", "b", "c"))

    def reply(sample: int, label: int, **kw) -> None:
        r = Reply(task="digits", sample=sample, label=label, confidence=0.9, model="m", worker="w", ts=0.0, **kw)
        esc.on_reply(Decoded(T.parse(T.reply("d1")), r),
                     Message(str(T.reply("d1")), b"", 1, False, correlation_data=str(sample).encode()))

    for s in (1, 2, 3):  # 1 is evicted by 3
        esc.register(Pending(s, 0, 0.4, 1, "ref", 0.0, True))
    reply(2, 1)
    reply(2, 1)  # a duplicate reply finds nothing
    reply(3, 9)  # not a class of the model in use
    for s in (4, 5):
        esc.register(Pending(s, 0, 0.4, 1, "ref", 0.0, True))
    reply(4, 2, defer=True)
    esc.expire(time.time() + 5)  # 5 passes its deadline
    esc.register(Pending(6, 0, 0.4, 1, "ref", 0.0, True))
    esc.at_stop()
    assert ended == [(1, "edge", 0), (2, "cloud", 1), (3, "edge", 0), (4, "edge", 0), (5, "edge", 0), (6, "edge", 0)]
    assert {k: c.get(k) for k in ("escalation.evicted", "reply.used", "reply.late", "reply.rejected.bad_label",
                                  "reply.deferred", "escalation.deadline", "escalation.at_stop")} == dict.fromkeys(
        ("escalation.evicted", "reply.used", "reply.late", "reply.rejected.bad_label", "reply.deferred",
         "escalation.deadline", "escalation.at_stop"), 1)
    assert len(esc) == 0


def test_meter_prices_frames_as_jpeg_and_windows_as_their_dtype():
    from edge_agent.config import TelemetrySettings
    from edge_agent.meter import Meter

    m = Meter(TelemetrySettings(jpeg_every=2))
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 255, (240, 320, 3), np.uint8)
    for _ in range(3):
        m.sample(frame)
    jpeg = m.raw_bytes / 3
    assert 0 < jpeg < frame.nbytes  # a JPEG of noise is large but smaller than the pixels
    m.sample(np.zeros((3, 100), np.float32))
    assert m.raw_bytes == round(jpeg * 3) + 1200 and m.frames == 4
    m.inference(0.002)
    m.escalation()
    m.uplink(100)
    r = m.read()
    assert (r.frames, r.inferred, r.escalated, r.uplink_bytes, r.escalation_ratio) == (4, 1, 1, 100, 1.0)
    assert r.latency_ms_p50 == pytest.approx(2.0)
