"""Pure core: labels joined before / after their rows, late label-only rows, beyond-window counting."""

from __future__ import annotations

import numpy as np

from hub_bridge.config import FusionSettings
from hub_bridge.fusion import Fuser
from shared.containers import FeatureBatch, FusedBatch
from shared.schemas import LabelItem, Labels

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
