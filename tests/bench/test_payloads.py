"""The bridge bench's load generator patches one encoded template per device: every payload must
decode exactly as its own encoding would (seq, sample ids, tensors), each (device, seq) once."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import bench_bridge  # noqa: E402

from shared.protocol.containers import FeatureBatch  # noqa: E402


def test_patched_payloads_decode_as_their_own_encoding():
    msgs = bench_bridge.gen_payloads("feat", 250, 7, 100)
    seen = set()
    for i, (topic, payload) in enumerate(msgs):
        fb = FeatureBatch.decode(payload)
        assert topic.endswith(f"/edge/d{i % 100}/feat/s") and fb.device == f"d{i % 100}"
        assert (fb.boot, fb.seq) == (7, i // 100)
        first = (7 + i) * bench_bridge.ROWS
        assert fb.sample.tolist() == list(range(first, first + bench_bridge.ROWS))
        again = FeatureBatch(fb.device, fb.stream, fb.task, fb.boot, fb.seq, fb.model_version, fb.sample, fb.feat,
                             fb.scores, fb.ts)
        assert FeatureBatch.decode(again.encode()).feat.tobytes() == fb.feat.tobytes()
        assert np.array_equal(fb.scores, again.scores)
        seen.add((fb.device, fb.seq))
    assert len(seen) == 250


def test_the_fleet_generator_patches_seq_samples_and_times_exactly():
    import bridge_fleet

    from shared.protocol.containers import HardSample

    feat = np.random.default_rng(1).random((5, 32), dtype=np.float32)
    scores = np.zeros((5, 10), np.float32)
    t = bridge_fleet._Patched(lambda sq, sm, ts: FeatureBatch("cam-7", "front", "digits", 3, sq, 1, sm, feat, scores,
                                                             ts).encode(), 5)
    fb = FeatureBatch.decode(t.make(1234, 50, 1.7e9 + 0.25))
    assert (fb.device, fb.boot, fb.seq) == ("cam-7", 3, 1234)
    assert fb.sample.tolist() == [50, 51, 52, 53, 54] and fb.ts.tolist() == [1.7e9 + 0.25] * 5
    assert fb.feat.tobytes() == feat.tobytes()
    x = np.ones((1, 1, 8, 8), np.float32)
    h = bridge_fleet._Patched(lambda sq, sm, ts: HardSample("cam-7", "front", "digits", 3, sq, 1, sm, x, feat[:1],
                                                           scores[:1], ts).encode(), 1)
    hs = HardSample.decode(h.make(7, 99, 5.5))
    assert (hs.seq, hs.sample.tolist(), hs.ts.tolist()) == (7, [99], [5.5]) and hs.x.tobytes() == x.tobytes()
