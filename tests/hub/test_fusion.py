"""Pure core: labels joined before / after their rows, late label-only rows, beyond-window counting."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hub_bridge.config import FusionSettings
from hub_bridge.fusion import Fuser
from shared.protocol.containers import FeatureBatch, FusedBatch
from shared.protocol.schemas import LabelItem, Labels

T0 = float(1_790_000_000 // 86400 * 86400)  # a UTC midnight


def fb(samples, device="cam-1", seq=1, dim=8, task="digits") -> FeatureBatch:
    n = len(samples)
    rng = np.random.default_rng(seq)
    scores = rng.random((n, 4), dtype=np.float32)
    return FeatureBatch(device, "front", task, 7, seq, 3, np.asarray(samples, np.int64),
                        rng.random((n, dim), dtype=np.float32), scores, np.full(n, T0 + 6 * 3600))


def lb(pairs, device="cam-1", task="digits") -> Labels:
    return Labels(device=device, stream="front", task=task, items=[LabelItem(sample=s, label=y) for s, y in pairs],
                  ts=T0)


def fuser(**kw) -> Fuser:
    base = dict(batch_size=100, batch_age=1.0, label_wait=0.5, window=10.0)
    base.update(kw)
    return Fuser(FusionSettings(**base), "b1")


def rows(emitted) -> dict[tuple[str, int], tuple[int, float]]:
    out = {}
    for e in emitted:
        b = FusedBatch.decode(e.batch.encode())  # through the wire format
        late = list(b.context_names).index("late_label")
        for i in range(len(b.sample)):
            out.setdefault((b.devices[b.device_idx[i]], int(b.sample[i])), []).append((int(b.label[i]),
                                                                                       float(b.ctx[i, late])))
    return out


def test_label_before_features_is_joined():
    f = fuser()
    f.add_labels(lb([(1, 5)]), now=0.0)

    f.add_features(fb([1, 2]), now=0.1)
    out = rows(f.poll(now=5.0))

    assert out == {("cam-1", 1): [(5, 0.0)], ("cam-1", 2): [(-1, 0.0)]}
    assert f.counters.get("labels.joined") == 1


def test_label_within_label_wait_is_joined_into_the_row():
    f = fuser()
    f.add_features(fb([1]), now=0.0)
    assert f.poll(now=0.2) == []

    f.add_labels(lb([(1, 3)]), now=0.3)
    out = rows(f.poll(now=2.0))

    assert out == {("cam-1", 1): [(3, 0.0)]}


def test_late_label_within_window_becomes_label_only_row():
    f = fuser()
    f.add_features(fb([1]), now=0.0)
    first = rows(f.poll(now=2.0))

    f.add_labels(lb([(1, 2)]), now=5.0)
    second = f.poll(now=7.0)

    assert first == {("cam-1", 1): [(-1, 0.0)]}
    assert rows(second) == {("cam-1", 1): [(2, 1.0)]}
    original = first and second[0].batch.feat[0]
    assert original.shape == (8,)
    assert f.counters.get("labels.joined_late") == 1


def test_late_label_beyond_window_is_counted_not_lost():
    f = fuser(window=3.0)
    f.add_features(fb([1]), now=0.0)
    f.poll(now=2.0)
    f.poll(now=10.0)  # row sent at 2.0, window over at 5.0

    f.add_labels(lb([(1, 2)]), now=10.5)

    assert f.poll(now=20.0) == []
    assert f.counters.get("labels.late") == 1


def test_label_for_a_row_that_never_comes_is_counted_unmatched():
    f = fuser(window=3.0)
    f.add_labels(lb([(99, 1)]), now=0.0)

    f.poll(now=4.0)

    assert f.counters.get("labels.unmatched") == 1


def test_batches_by_size_and_by_age_per_task_and_width():
    f = fuser(batch_size=4, label_wait=0.0, batch_age=1.0)
    f.add_features(fb(range(10)), now=0.0)
    f.add_features(fb([50], device="cam-2", seq=2, dim=16), now=0.0)
    f.add_features(fb([60], seq=3, task="motions"), now=0.0)

    by_size = f.poll(now=0.1)
    by_age = f.poll(now=1.5)

    assert [len(e.batch.sample) for e in by_size] == [4, 4]
    assert sorted((e.batch.task, e.batch.feat.shape) for e in by_age) == [
        ("digits", (1, 16)), ("digits", (2, 8)), ("motions", (1, 8))]


def test_context_columns_and_edge_predictions():
    f = fuser(label_wait=0.0, context=["hour_sin", "hour_cos", "meta:height", "late_label"],
              devices={"cam-1": {"height": 2.5}})
    batch = fb([1, 2])

    out = f.poll(now=2.0) if f.add_features(batch, now=0.0) else []
    b = out[0].batch

    # 06:00 UTC: sin(2*pi/4) == 1, cos == 0
    np.testing.assert_allclose(b.ctx[:, 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(b.ctx[:, 1], 0.0, atol=1e-6)
    np.testing.assert_allclose(b.ctx[:, 2], 2.5)
    np.testing.assert_array_equal(b.edge_label, batch.scores.argmax(1))
    np.testing.assert_allclose(b.edge_conf, batch.scores.max(1))


def test_duplicate_rows_and_labels_counted():
    f = fuser(label_wait=0.0)
    f.add_features(fb([1]), now=0.0)
    f.add_features(fb([1], seq=2), now=0.0)
    f.add_labels(lb([(1, 4)]), now=0.1)
    f.add_labels(lb([(1, 4)]), now=0.2)

    out = rows(f.poll(now=2.0))

    assert out == {("cam-1", 1): [(4, 0.0)]}
    assert f.counters.get("rows.duplicate") == 1
    assert f.counters.get("labels.duplicate") == 1


def test_refs_come_back_once_per_hold():
    released = []
    f = Fuser(FusionSettings(label_wait=0.0, batch_age=1.0, window=1.0), "b1", release=released.append)
    held = []
    f.add_features(fb([1, 2]), now=0.0, ref="feat-msg", hold=held.append)
    f.add_labels(lb([(1, 1)]), now=0.1, ref="label-msg", hold=held.append)
    f.add_labels(lb([(77, 1)]), now=0.1, ref="orphan", hold=held.append)

    emitted = f.poll(now=2.0)

    assert sorted(held) == sorted(emitted[0].refs + released)
    assert released == ["orphan"]


def fb16(samples, device="cam-1", seq=1, dim=8) -> FeatureBatch:
    b = fb(samples, device=device, seq=seq, dim=dim)
    return FeatureBatch(b.device, b.stream, b.task, b.boot, b.seq, b.model_version, b.sample,
                        b.feat.astype(np.float16), b.scores.astype(np.float16), b.ts)


def test_float16_rows_stay_float16_and_never_share_a_batch_with_float32():
    f = fuser(label_wait=0.0)
    half, full = fb16([1, 2], seq=1), fb([3], seq=2)
    f.add_features(half, now=0.0)
    f.add_features(full, now=0.0)

    out = {e.batch.feat.dtype.name: FusedBatch.decode(e.batch.encode()) for e in f.poll(now=2.0)}

    assert set(out) == {"float16", "float32"}
    np.testing.assert_array_equal(out["float16"].feat, half.feat)  # bit for bit, not widened
    assert out["float16"].feat.dtype == np.float16 and out["float16"].edge_conf.dtype == np.float32
    np.testing.assert_array_equal(out["float16"].edge_label, half.scores.argmax(1))


def test_a_message_split_across_batches_keeps_labels_refs_and_custody_counts():
    released = []
    held = []
    f = Fuser(FusionSettings(batch_size=3, label_wait=0.0, batch_age=1.0, window=10.0), "b1", release=released.append)
    f.add_features(fb(range(5)), now=0.0, ref="m1", hold=held.append, src=("cam-1", 7, 1))
    f.add_labels(lb([(4, 9)]), now=0.0, ref="l1", hold=held.append)  # a row of the second part

    first = f.poll(now=0.1)
    f.add_labels(lb([(0, 2)]), now=0.2, ref="l2", hold=held.append)  # already sent: a label-only row
    second = f.poll(now=2.0)

    assert [len(e.batch.sample) for e in first] == [3]
    assert [len(e.batch.sample) for e in second] == [3]  # rows 3 and 4, and row 0 again as a label-only row
    assert sum((e.src for e in first + second), Counter()) == Counter({("cam-1", 7, 1): 5})
    labels = {int(s): int(y) for e in first + second for s, y, late in
              zip(e.batch.sample, e.batch.label, e.batch.ctx[:, -1], strict=True) if not late}
    assert labels == {0: -1, 1: -1, 2: -1, 3: -1, 4: 9}
    # one release per hold: the message's ref once per batch it spans, each label's ref with its row
    assert sorted(held) == sorted(r for e in first + second for r in e.refs) and not released


def test_copies_within_and_across_messages_are_dropped_and_forgotten_rows_come_back():
    f = fuser(label_wait=0.0, batch_size=100)
    assert f.add_features(fb([1, 1, 2]), now=0.0) == 2
    assert f.add_features(fb([2, 3], seq=2), now=0.0) == 1
    out = f.poll(now=2.0)
    assert sorted(int(s) for e in out for s in e.batch.sample) == [1, 2, 3]
    assert f.counters.get("rows.duplicate") == 2
    assert f.add_features(fb([3], seq=3), now=3.0) == 0  # sent, within the window: a copy

    f.forget([s for e in out for s in e.samples])  # their batch was given up

    assert f.add_features(fb([3], seq=4), now=3.0) == 1  # a resend is new


def test_sent_rows_leave_the_window_as_tombstones_bounded_in_number():
    f = fuser(label_wait=0.0, window=1.0, max_recent_rows=2)
    for seq in range(5):
        f.add_features(fb([seq], seq=seq + 1), now=0.0)
    f.poll(now=2.0)
    f.poll(now=4.0)

    f.add_labels(lb([(0, 1)]), now=4.0)

    assert f.counters.get("labels.late") == 1
    assert f.gauges()["fusion.recent_rows"] == 0 and f._tomb_rows <= 8


def _with_raw(batch: FeatureBatch, length: int = 12) -> FeatureBatch:
    import dataclasses

    from shared.protocol.rawsample import RawRows

    n = len(batch.sample)
    win = (np.zeros((n, 1, length), np.float32) + batch.sample[:, None, None]).astype(np.float16)
    return dataclasses.replace(batch, raw=RawRows.tensor(win))


def test_raw_samples_ride_through_fusion_with_their_rows_and_late_labels():
    f = fuser()
    f.add_features(_with_raw(fb([1, 2, 3])), now=0.0)
    f.add_features(fb([4]), now=0.0)  # a row without its sample never shares a batch with rows that carry one
    f.add_labels(lb([(2, 1)]), now=0.1)
    out = f.poll(now=2.0)
    with_raw = [FusedBatch.decode(e.batch.encode()) for e in out if e.batch.raw is not None]
    without = [e.batch for e in out if e.batch.raw is None]
    assert len(with_raw) == 1 and [len(b.sample) for b in without] == [1]
    b = with_raw[0]
    assert b.raw.data.shape == (3, 1, 12) and b.raw.data.dtype == np.float16
    for i, s in enumerate(b.sample):
        assert b.raw.data[i, 0, 0] == s  # each row keeps its own sample
    assert b.label.tolist() == [-1, 1, -1]
    # A late label is sent as a label-only row: its sample travels with it again.
    f.add_labels(lb([(3, 0)]), now=3.0)
    late = FusedBatch.decode(f.poll(now=5.0)[0].batch.encode())
    assert late.sample.tolist() == [3] and late.raw.data[0, 0, 0] == 3 and late.label.tolist() == [0]
