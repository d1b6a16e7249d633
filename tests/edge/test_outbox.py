"""The SQLite outbox: overflow policy, TTL, order, persistence across reopen."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_agent.outbox import Outbox
from shared.process.counters import Counters


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(tmp_path, max_bytes=1000, ttl=None, clock=None) -> Outbox:
    return Outbox(tmp_path / "o.sqlite", max_bytes=max_bytes, ttl_s=ttl or {}, counters=Counters(),
                  clock=clock or Clock()).open()


def put(ob: Outbox, cls: str, seq: int, size: int = 100) -> bool:
    return ob.put(cls, f"t/{cls}", bytes([seq % 256]) * size, qos=1, boot=7, seq=seq)


def remaining(ob: Outbox) -> list[tuple[str, int]]:
    return [(r.cls, r.seq) for r in ob.next_rows({}, 10_000)]


def test_rows_come_out_by_class_priority_and_in_order(tmp_path):
    ob = make(tmp_path, max_bytes=10_000)
    for seq, cls in enumerate(["feat", "event", "hard", "feat", "telemetry", "event"]):
        put(ob, cls, seq)
    assert remaining(ob) == [("event", 1), ("event", 5), ("hard", 2), ("feat", 0), ("feat", 3), ("telemetry", 4)]


def test_next_rows_resumes_after_cursor_and_respects_limit(tmp_path):
    ob = make(tmp_path, max_bytes=10_000)
    for seq in range(5):
        put(ob, "feat", seq)
    first = ob.next_rows({}, 2)
    rest = ob.next_rows({"feat": first[-1].id}, 10)
    assert [r.seq for r in first] == [0, 1] and [r.seq for r in rest] == [2, 3, 4]


def test_full_outbox_drops_oldest_features_first_and_keeps_events(tmp_path):
    # Prepare: 10 x 100 B fill it exactly (4 events, 3 hard, 3 feat)
    ob = make(tmp_path, max_bytes=1000)
    seq = 0
    for cls, n in (("event", 4), ("hard", 3), ("feat", 3)):
        for _ in range(n):
            assert put(ob, cls, seq)
            seq += 1
    # Execute: one more event needs 100 B
    assert put(ob, "event", 100)
    # Assert: exactly the oldest feature row went
    assert ob.counters.get("outbox.evicted.feat") == 1 and ob.total_bytes() == 1000
    assert remaining(ob) == [("event", 0), ("event", 1), ("event", 2), ("event", 3), ("event", 100),
                             ("hard", 4), ("hard", 5), ("hard", 6), ("feat", 8), ("feat", 9)]


def test_eviction_walks_up_classes_lowest_first(tmp_path):
    ob = make(tmp_path, max_bytes=1000)
    for seq, cls in enumerate(["telemetry", "feat", "feat", "hard", "hard", "hard", "event", "event", "event",
                               "event"]):
        put(ob, cls, seq)
    # 250 B for an event: telemetry (100) + both feats (200) go; nothing of hard or event.
    assert ob.put("event", "t/event", b"e" * 250, qos=1, boot=7, seq=50)
    assert [ob.counters.get(f"outbox.evicted.{c}") for c in ("telemetry", "feat", "hard", "event")] == [1, 2, 0, 0]
    assert ob.depth("feat") == 0 and ob.depth("hard") == 3 and ob.depth("event") == 5
    assert ob.total_bytes() == 950


def test_lower_class_never_evicts_a_higher_one_it_is_refused_instead(tmp_path):
    ob = make(tmp_path, max_bytes=500)
    for seq in range(5):
        put(ob, "event", seq)
    assert not put(ob, "feat", 9)
    assert not put(ob, "hard", 10)
    assert ob.counters.get("outbox.refused.feat") == 1 and ob.counters.get("outbox.refused.hard") == 1
    assert remaining(ob) == [("event", s) for s in range(5)]


def test_same_class_drops_its_own_oldest(tmp_path):
    ob = make(tmp_path, max_bytes=300)
    for seq in range(5):
        assert put(ob, "feat", seq)
    assert remaining(ob) == [("feat", 2), ("feat", 3), ("feat", 4)]
    assert ob.counters.get("outbox.evicted.feat") == 2


def test_message_larger_than_the_whole_outbox_is_refused(tmp_path):
    ob = make(tmp_path, max_bytes=300)
    put(ob, "feat", 1)
    assert not ob.put("event", "t", b"x" * 301, qos=1, boot=7, seq=2)
    assert remaining(ob) == [("feat", 1)]


def test_ttl_purges_per_class(tmp_path):
    clock = Clock()
    ob = make(tmp_path, max_bytes=10_000, ttl={"feat": 10.0, "event": 100.0}, clock=clock)
    put(ob, "feat", 0)
    put(ob, "event", 1)
    clock.t += 50
    put(ob, "feat", 2)
    assert ob.purge_expired() == 1
    assert remaining(ob) == [("event", 1), ("feat", 2)]
    assert ob.counters.get("outbox.expired.feat") == 1


def test_ack_deletes_and_rows_survive_reopen_with_boot_and_seq(tmp_path):
    ob = make(tmp_path, max_bytes=10_000)
    for seq in range(4):
        put(ob, "hard", seq)
    rows = ob.next_rows({}, 10)
    assert ob.ack([rows[0].id, rows[1].id, 999_999]) == 2
    ob.close()
    again = make(tmp_path, max_bytes=10_000)
    assert again.depth() == 2 and again.total_bytes() == 200
    assert [(r.boot, r.seq) for r in again.next_rows({}, 10)] == [(7, 2), (7, 3)]


def test_response_topic_and_correlation_are_kept(tmp_path):
    ob = make(tmp_path, max_bytes=10_000)
    ob.put("hard", "t/hard", b"x", qos=1, boot=1, seq=0, response_topic="t/reply", correlation=b"42")
    (row,) = ob.next_rows({}, 1)
    assert (row.response_topic, row.correlation, row.qos) == ("t/reply", b"42", 1)


def test_unknown_class_is_a_programming_error(tmp_path):
    with pytest.raises(ValueError):
        make(tmp_path).put("pred", "t", b"x", qos=1, boot=1, seq=0)


class ModelOutbox:
    """The documented overflow policy in plain Python, to compare the SQLite one against."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.rows: list[tuple[str, int, int]] = []  # (cls, seq, size) in insertion order

    def put(self, cls: str, seq: int, size: int) -> bool:
        from edge_agent.outbox import CLASSES, RANK

        need = sum(r[2] for r in self.rows) + size - self.max_bytes
        victims = [c for c in reversed(CLASSES) if RANK[c] >= RANK[cls]]
        if size > self.max_bytes or sum(r[2] for r in self.rows if r[0] in victims) < need:
            return False
        for v in victims:
            while need > 0 and any(r[0] == v for r in self.rows):
                i = next(i for i, r in enumerate(self.rows) if r[0] == v)
                need -= self.rows.pop(i)[2]
        self.rows.append((cls, seq, size))
        return True

    def remaining(self) -> list[tuple[str, int]]:
        from edge_agent.outbox import CLASSES

        return [(c, s) for c in CLASSES for (cc, s, _) in self.rows if cc == c]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["event", "hard", "feat", "telemetry"]), st.integers(1, 400)),
                max_size=60))
def test_overflow_policy_matches_the_documented_model(tmp_path_factory, ops):
    ob = Outbox(tmp_path_factory.mktemp("ob") / "o.sqlite", max_bytes=1000, counters=Counters()).open()
    model = ModelOutbox(1000)
    for seq, (cls, size) in enumerate(ops):
        got = ob.put(cls, "t", b"x" * size, qos=1, boot=1, seq=seq)
        assert got == model.put(cls, seq, size)
        assert ob.total_bytes() <= 1000
    assert remaining(ob) == model.remaining()
    ob.close()


def test_a_database_error_loses_that_message_counted_not_the_device(tmp_path):
    ob = make(tmp_path, max_bytes=10_000)
    put(ob, "event", 0)
    ob._db.execute("PRAGMA query_only=1")  # stands in for a full or read-only disk
    assert not put(ob, "feat", 1)
    assert ob.counters.get("outbox.errors.feat") == 1 and ob.depth() == 1
    ob._db.execute("PRAGMA query_only=0")
    assert put(ob, "feat", 2) and remaining(ob) == [("event", 0), ("feat", 2)]
