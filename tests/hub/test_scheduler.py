"""Pure core: priority order, guaranteed shares, TTL expiry, overflow policies, exact accounting."""

from __future__ import annotations

import pytest

from hub_bridge.scheduler import Item, PriorityScheduler


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(capacities=(100, 100, 100), shares=(0.0, 0.0, 0.0), overflow=("drop_oldest",) * 3, clock=None):
    discarded: list[tuple[Item, str]] = []
    s = PriorityScheduler(capacities, shares, overflow, on_discard=lambda it, why: discarded.append((it, why)),
                          clock=clock or Clock())
    return s, discarded


def put(s: PriorityScheduler, cls: int, tag: object, ttl: float = 60.0, dev: str = "d") -> None:
    now = s.clock()
    s.put(Item(cls, dev, now, now + ttl, tag))


def drain(s: PriorityScheduler) -> list[object]:
    out = []
    while (it := s.pop(timeout=0)) is not None:
        out.append(it.payload)
    return out


def test_highest_class_first_fifo_within_class():
    s, _ = make()
    for i in range(3):
        put(s, 2, f"low{i}")
        put(s, 0, f"top{i}")
        put(s, 1, f"mid{i}")

    order = drain(s)

    assert order == ["top0", "top1", "top2", "mid0", "mid1", "mid2", "low0", "low1", "low2"]


def test_guaranteed_share_serves_starved_class():
    s, _ = make(capacities=(2000, 2000, 2000), shares=(0.0, 0.0, 0.1))
    for i in range(1000):
        put(s, 0, ("top", i))
    for i in range(50):
        put(s, 2, ("low", i))

    first_200 = [drain_one(s) for _ in range(200)]

    lows = [p for p in first_200 if p[0] == "low"]
    assert 18 <= len(lows) <= 22, len(lows)  # ~10% of dispatches while backlogged
    assert [p[1] for p in lows] == list(range(len(lows)))  # still FIFO within the class


def drain_one(s):
    return s.pop(timeout=0).payload


def test_without_share_lower_class_waits_for_empty_top():
    s, _ = make()
    for i in range(100):
        put(s, 0, ("top", i))
    put(s, 2, ("low", 0))

    order = drain(s)

    assert order[-1] == ("low", 0)


def test_ttl_expiry_is_counted_and_skipped():
    clock = Clock()
    s, discarded = make(clock=clock)
    put(s, 1, "old", ttl=1.0)
    put(s, 1, "young", ttl=10.0)
    clock.t += 2.0

    got = drain(s)

    assert got == ["young"]
    assert [(it.payload, why) for it, why in discarded] == [("old", "expired")]
    assert s.expired == [0, 1, 0]


def test_sweep_expires_without_pop():
    clock = Clock()
    s, discarded = make(clock=clock)
    put(s, 2, "a", ttl=1.0)
    put(s, 2, "b", ttl=1.0)
    clock.t += 5

    n = s.sweep()

    assert n == 2 and len(s) == 0 and s.expired[2] == 2
    assert {why for _, why in discarded} == {"expired"}


def test_drop_oldest_keeps_newest():
    s, discarded = make(capacities=(3, 3, 3))
    for i in range(5):
        put(s, 1, i)

    assert drain(s) == [2, 3, 4]
    assert [it.payload for it, _ in discarded] == [0, 1]
    assert s.dropped[1] == 2


def test_drop_newest_keeps_oldest():
    s, discarded = make(capacities=(3, 3, 3), overflow=("drop_oldest", "drop_newest", "drop_oldest"))
    accepted = []
    for i in range(5):
        now = s.clock()
        accepted.append(s.put(Item(1, "d", now, now + 60, i)))

    assert accepted == [True, True, True, False, False]
    assert drain(s) == [0, 1, 2]
    assert [it.payload for it, _ in discarded] == [3, 4]


def test_accounting_adds_up_exactly():
    clock = Clock()
    s, discarded = make(capacities=(5, 5, 5), shares=(0, 0.2, 0.1), clock=clock)
    popped = 0
    for step in range(300):
        put(s, step % 3, step, ttl=0.5 + (step % 7) * 0.1)
        clock.t += 0.01
        if step % 4 == 0 and s.pop(timeout=0) is not None:
            popped += 1
    clock.t += 10
    assert s.pop(timeout=0) is None

    for c in range(3):
        assert s.put_count[c] == s.popped[c] + s.dropped[c] + s.expired[c]
    assert sum(s.popped) == popped
    assert len(discarded) == sum(s.dropped) + sum(s.expired)


def test_push_front_is_served_next_and_not_double_counted():
    s, _ = make()
    put(s, 1, "a")
    put(s, 1, "b")
    it = s.pop(timeout=0)

    s.push_front(it)

    assert drain(s) == ["a", "b"]
    assert s.popped[1] == 2 and s.put_count[1] == 2


def test_bad_shares_rejected():
    with pytest.raises(ValueError):
        PriorityScheduler((1, 1), (0.6, 0.5), ("drop_oldest", "drop_oldest"))


def test_bulk_items_wake_a_waiting_consumer_only_at_the_nudge():
    import threading
    import time

    s = PriorityScheduler((10, 10), (0.0, 0.0), ("drop_oldest",) * 2, urgent=1)
    got: list[tuple[object, float]] = []
    done = threading.Event()

    def consume() -> None:
        it = s.pop(timeout=5.0)
        got.append((it and it.payload, time.monotonic()))
        done.set()

    th = threading.Thread(target=consume)
    th.start()
    time.sleep(0.05)
    s.put(Item(1, "d", 0.0, 1e18, "bulk"))  # a burst's item: no wake-up per item
    assert not done.wait(0.3)
    t_nudge = time.monotonic()
    s.nudge()  # the burst is read: one wake-up
    assert done.wait(2.0)
    th.join()
    assert got[0][0] == "bulk" and got[0][1] >= t_nudge
    th = threading.Thread(target=consume)
    done.clear()
    th.start()
    time.sleep(0.05)
    s.put(Item(0, "d", 0.0, 1e18, "urgent"))  # an urgent class wakes the consumer at once
    assert done.wait(2.0)
    th.join()
