"""BatchOut (fused batches leaving for hub/batch) and GcPolicy (the collector while bridges run)."""

from __future__ import annotations

import gc
from collections import Counter

from hub_bridge.acks import Acker
from hub_bridge.batch_out import BatchOut
from hub_bridge.custody import Handoff
from hub_bridge.gc_policy import GcPolicy
from shared.process.counters import Counters
from shared.protocol.topics import Filter

from .helpers import Collector, wait_until


def test_batches_wait_in_order_without_a_client_and_leave_in_order_with_one(broker, topics, mqtt_factory):
    held: list = []
    handoff = Handoff("broker", 5.0, 20.0, 10, on_held=held.append, on_abandon=lambda b: None)
    counters = Counters()
    client = None
    out = BatchOut(topics, handoff, Acker([]), counters, ttl_s=2.5, client=lambda: client, clock=lambda: 0.0)
    key = ("cam-1", 1, 1)
    handoff.expect(key, 1)
    handoff.emitted(7, "digits", b"first", Counter({key: 1}), [], 0.0)
    out.resend("digits", b"first", 7)
    out.resend("digits", b"second", 8)
    assert out.flush() is False and len(out) == 2  # nobody to publish to: kept, in order

    seen = Collector(mqtt_factory()).add(Filter(str(topics.hub_batch("digits"))))
    client = mqtt_factory()
    assert out.flush() is True and len(out) == 0
    assert wait_until(lambda: len(seen.matching()) == 2, 5.0)
    assert [m.payload for m in seen.matching()] == [b"first", b"second"]
    assert all(0 < (m.message_expiry or 0) <= 3 for m in seen.matching())  # the rows' TTL, rounded up
    assert wait_until(lambda: held == [key], 5.0)  # broker mode: the PUBACK hands the rows over
    snap = counters.snapshot()
    assert snap["out.batches"] == 2 and snap["out.batch_republished"] == 2


def test_gc_policy_is_process_wide_and_restored_by_the_last_bridge():
    before = (gc.isenabled(), gc.get_threshold())
    try:
        GcPolicy.enter(freeze=False, manual=True)
        GcPolicy.enter(freeze=False, manual=True)
        assert not gc.isenabled()
        GcPolicy.leave()
        assert not gc.isenabled()  # another bridge still runs
        GcPolicy.leave()
        assert (gc.isenabled(), gc.get_threshold()) == before
        GcPolicy.enter(freeze=False, manual=False)
        assert gc.get_threshold()[0] > before[1][0]  # automatic, with far fewer young collections
        GcPolicy.leave()
        assert (gc.isenabled(), gc.get_threshold()) == before
    finally:
        gc.enable()
        gc.set_threshold(*before[1])
