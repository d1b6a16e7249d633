"""Custody at the hub: the ledger and hand-off logic, and the bridge telling devices on a real broker."""

from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from hub_bridge.custody import IN_CUSTODY, IN_PROCESS, NEW, CustodyLedger, Handoff
from shared.protocol import schemas
from shared.protocol.containers import FusedBatch
from shared.protocol.topics import Kind

from .helpers import (
    BOOT,
    FEAT_BOOT,
    HARD_BOOT,
    Collector,
    bridge_config,
    event,
    feat,
    hard,
    start_bridge,
    wait_until,
)


def test_ledger_admits_once_and_reannounces_custody_of_copies():
    led = CustodyLedger(interval_s=10.0)
    k = ("cam-1", 7, 3)
    assert led.admit(k) == NEW
    assert led.admit(k) == IN_PROCESS  # a copy while the first is in process: its custody follows the first
    assert led.due(0.0) == []
    led.finish(k, 1.0)
    assert led.due(1.0) == [("cam-1", 7, [(3, 3)])]
    assert led.due(2.0) == []  # nothing new
    led.finish(("cam-1", 7, 4), 2.0)
    assert led.due(2.0) == []  # news, but the device heard from us a second ago (interval 10 s)
    assert led.due(11.0) == [("cam-1", 7, [(3, 4)])]  # cumulative
    assert led.admit(k) == IN_CUSTODY
    assert led.due(11.5) == [("cam-1", 7, [(3, 4)])]  # a copy of a custodied one: the device missed it, at once
    assert led.duplicates == 2


def test_ledger_spaces_its_words_by_how_many_devices_have_news_and_counts_the_untold():
    led = CustodyLedger(interval_s=1.0, max_rate=2.0, max_interval_s=8.0)
    for d in range(10):
        led.finish((f"d{d}", 1, 0), 0.0)
    assert led.untold == 10 and led.gauges()["custody.untold"] == 10.0
    assert len(led.due(0.0)) == 10  # nobody heard yet: every device at once
    assert led.untold == 0
    for d in range(10):
        for seq in (1, 2):
            led.finish((f"d{d}", 1, seq), 0.5)
    assert led.untold == 20
    # 10 devices with news at 2 words a second: each hears every 5 s, not every second
    assert led.due(1.5) == [] and led.gauges()["custody.interval_s"] == 5.0
    assert led.due(4.9) == []
    assert [d for d, _, _ in led.due(5.0)] == [f"d{d}" for d in range(10)] and led.untold == 0
    # one device with news: back to the floor of 1 s; and never beyond max_interval_s
    led.finish(("d0", 1, 3), 5.5)
    assert led.due(6.0) == [("d0", 1, [(0, 3)])] and led.gauges()["custody.interval_s"] == 1.0
    wide = CustodyLedger(interval_s=1.0, max_rate=1.0, max_interval_s=3.0)
    for d in range(100):
        wide.finish((f"d{d}", 1, 0), 0.0)
    wide.due(0.0)
    for d in range(100):
        wide.finish((f"d{d}", 1, 1), 0.1)
    assert wide.due(2.9) == [] and len(wide.due(3.0)) == 100


def test_custody_spacing_is_validated():
    from hub_bridge.config import CustodySettings

    with pytest.raises(ValueError, match="max_interval_s must be at least"):
        CustodySettings(interval_s=5.0, max_interval_s=2.0)
    assert CustodySettings(max_rate=None).max_rate is None


def test_ledger_settles_shed_messages_unless_a_copy_is_in_process_and_forgets_abandoned_ones():
    led = CustodyLedger()
    busy, shed = ("d", 1, 1), ("d", 1, 2)
    led.admit(busy)
    assert led.settle(busy, 0.0) is False and led.state(busy) == IN_PROCESS
    assert led.settle(shed, 0.0) is True and led.state(shed) == IN_CUSTODY
    led.abandon(busy)
    assert led.admit(busy) == NEW  # given up: a copy sent again is processed


def test_ledger_is_bounded_by_streams():
    led = CustodyLedger(max_streams=2)
    for boot in range(4):
        led.finish(("d", boot, 0), 0.0)
    assert led.state(("d", 0, 0)) == NEW and led.state(("d", 3, 0)) == IN_CUSTODY


def _handoff(mode="worker", **kw):
    held, abandoned = [], []
    h = Handoff(mode, kw.get("republish_s", 5.0), kw.get("republish_max_s", 20.0), kw.get("max_batches", 10),
                on_held=held.append, on_abandon=abandoned.append)
    return h, held, abandoned


def test_handoff_holds_a_device_message_when_every_batch_with_its_rows_is_acked():
    h, held, _ = _handoff()
    a, b = ("d", 1, 1), ("d", 1, 2)
    h.expect(a, 3)
    h.expect(b, 1)
    h.emitted(1, "t", b"x", Counter({a: 2, b: 1}), [], 0.0)
    h.emitted(2, "t", b"y", Counter({a: 1}), [], 0.0)
    h.broker_acked(1)  # worker mode: the broker's word is not enough
    assert held == []
    assert h.worker_acked([(1, 1)]) == 1
    assert held == [b]
    h.worker_acked([(1, 2), (7, 9)])  # repeats and unknown seqs are harmless
    assert held == [b, a] and len(h) == 0
    h.expect(("d", 1, 3), 0)  # no new rows (all were copies): nothing to wait for
    assert held[-1] == ("d", 1, 3)


def test_handoff_republishes_with_backoff_and_broker_mode_needs_no_worker():
    h, held, _ = _handoff(republish_s=5.0, republish_max_s=12.0)
    h.expect(("d", 1, 1), 1)
    h.emitted(1, "t", b"x", Counter({("d", 1, 1): 1}), [], 0.0)
    assert h.due(4.9) == []
    assert [b.seq for b in h.due(5.0)] == [1]
    assert h.due(14.9) == [] and [b.seq for b in h.due(15.0)] == [1]  # 10 s next
    assert h.due(26.9) == [] and [b.seq for b in h.due(27.0)] == [1]  # capped at 12 s
    hb, held_b, _ = _handoff("broker")
    hb.expect(("d", 1, 1), 1)
    hb.emitted(1, "t", b"x", Counter({("d", 1, 1): 1}), [], 0.0)
    assert hb.due(1e9) == []
    hb.broker_acked(1)
    assert held_b == [("d", 1, 1)]


def test_handoff_gives_up_the_oldest_batch_beyond_its_bound():
    h, held, abandoned = _handoff(max_batches=2)
    for seq in range(1, 4):
        h.expect(("d", 1, seq), 1)
        h.emitted(seq, "t", b"x", Counter({("d", 1, seq): 1}), [("d", seq)], 0.0)
    assert [b.seq for b in abandoned] == [1] and len(h) == 2 and h.abandoned == 1
    h.worker_acked([(1, 3)])
    assert held == [("d", 1, 2), ("d", 1, 3)]  # the abandoned one is nobody's: its device sends it again


@pytest.mark.broker
@pytest.mark.parametrize("mode", ["worker", "broker"])
def test_bridge_gives_custody_for_events_escalations_and_features(broker, topics, mqtt_factory, bridges, mode):
    # Prepare: a device that listens for custody, and in worker mode a worker that acknowledges
    pub, dev, worker = mqtt_factory(), mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, custody={"features": mode, "interval_s": 0.2, "republish_s": 0.5})
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    custody = Collector(dev).add(topics.edge_kind(Kind.CUSTODY, "cam-1"))
    batches = Collector(worker).add(topics.hub_batches())
    # Execute
    for seq in range(3):
        pub.publish(topics.event("cam-1", "front"), event("cam-1", seq), qos=1)
        pub.publish(topics.hard("cam-1", "front"), hard("cam-1", seq), qos=1)
        pub.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, [10 * seq, 10 * seq + 1]), qos=1)

    def held(boot: int) -> set[int]:
        out: set[int] = set()
        for m in custody.matching():
            c = schemas.loads(m.payload, schemas.Custody)
            if c.boot == boot:
                out |= {s for lo, hi in c.ranges for s in range(lo, hi + 1)}
        return out

    assert wait_until(lambda: held(BOOT) == {0, 1, 2} and held(HARD_BOOT) == {0, 1, 2}, 10), custody.matching()
    assert wait_until(lambda: batches.matching(), 10)
    if mode == "worker":
        # Assert: features wait for a worker; unacknowledged batches come again
        time.sleep(0.5)
        assert held(FEAT_BOOT) == set()
        assert wait_until(lambda: b.counters.get("out.batch_republished") >= 1, 10)
        fb = FusedBatch.decode(batches.matching()[0].payload)
        assert fb.bridge == cfg.id and fb.boot == b.boot
        seqs = sorted({FusedBatch.decode(m.payload).seq for m in batches.matching()})
        ack = schemas.BatchAck(bridge=cfg.id, boot=b.boot, task="digits", ranges=[(seqs[0], seqs[-1])], worker="w",
                               ts=time.time())
        worker.publish(topics.hub_ack(cfg.id), schemas.dumps(ack), qos=1)
        stale = schemas.BatchAck(bridge=cfg.id, boot=b.boot - 1, task="digits", ranges=[(1, 1)], worker="w",
                                 ts=time.time())
        worker.publish(topics.hub_ack(cfg.id), schemas.dumps(stale), qos=1)
        worker.publish(topics.hub_ack(cfg.id), b'{"schema":1,"kind":"batch_ack","ranges":[[' + b"9" * 5000 + b",1]]}",
                       qos=1)
    assert wait_until(lambda: held(FEAT_BOOT) == {0, 1, 2}, 10), (mode, b.snapshot()[0])
    if mode == "worker":
        assert wait_until(lambda: b.counters.get("custody.ack_other_boot") == 1
                          and b.counters.get("rejected.batch_ack.not_json") == 1, 5), b.snapshot()[0]
    # A copy of a message in custody is dropped, and custody is announced again at once
    n = len(custody.matching())
    pub.publish(topics.event("cam-1", "front"), event("cam-1", 1), qos=1)
    assert wait_until(lambda: len(custody.matching()) > n and b.counters.get("duplicate.event") == 1, 5)
    status = json.loads(b._status_payload("online"))
    assert status["gauges"]["custody.in_process"] == 0.0 and status["counters"]["custody.finished"] == 9


@pytest.mark.broker
def test_shed_messages_are_in_custody_too(broker, topics, mqtt_factory, bridges):
    # Prepare: feature messages whose TTL runs out while they wait for the dispatcher (a 0.1 ms TTL)
    pub, dev = mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, custody={"interval_s": 0.2, "features": "broker"},
                        classes={"feature": {"capacity": 100, "ttl": 0.0001}})
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    custody = Collector(dev).add(topics.edge_kind(Kind.CUSTODY, "cam-1"))
    # Execute
    for seq in range(5):
        pub.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, [seq]), qos=1)
    # Assert: expired by policy (counted; one may beat its TTL) and in custody: the device need not send them again
    assert wait_until(lambda: b.counters.get("expired.feature") + b.delivered[3] == 5, 10), b.snapshot()[0]
    assert b.counters.get("expired.feature") >= 1

    def custodied() -> int:
        seen: set[int] = set()
        for m in custody.matching():
            c = schemas.loads(m.payload, schemas.Custody)
            if c.boot == FEAT_BOOT:
                seen |= {s for lo, hi in c.ranges for s in range(lo, hi + 1)}
        return len(seen)

    assert wait_until(lambda: custodied() == 5, 10), custody.matching()


@pytest.mark.parametrize("ranges", [[(0, 0)], [(3, 9), (11, 11), (20, 2**40)]])
def test_custody_payload_is_the_custody_schema(ranges):
    from hub_bridge.custody import custody_payload

    payload = custody_payload("cam-1", 1_700_000_000_123, ranges, 1790000000.25)

    c = schemas.loads(payload, schemas.Custody)
    assert (c.device, c.boot, [tuple(r) for r in c.ranges], c.ts) == ("cam-1", 1_700_000_000_123, ranges,
                                                                        1790000000.25)
    assert payload == schemas.dumps(c)  # byte for byte what pydantic would have written


def test_acker_sends_released_acks_in_one_batch_per_flush_and_never_on_a_newer_connection():
    from hub_bridge.acks import Acker
    from shared.transport.mqtt import Message

    sent: list[list[int]] = []
    acker = Acker([lambda msgs: sent.append([m.mid for m in msgs])])
    toks = [acker.token(Message("t", b"", 1, False, mid=i), 0) for i in range(4)]
    acker.hold(toks[0])
    for t in toks:
        acker.release(t)
    assert sent == []  # nothing before the flush
    acker.flush()
    assert sent == [[1, 2, 3]]  # toks[0] still held once
    acker.release(toks[0])
    acker.new_connection(0)  # reconnected before the flush: that message is redelivered, not acked here
    acker.flush()
    assert sent == [[1, 2, 3]] and acker.stale == 1 and acker.acked == 3
