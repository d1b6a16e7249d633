"""Store and forward through a real broker outage under load."""

from __future__ import annotations

import uuid

from shared.protocol.dedup import Deduper
from shared.protocol.topics import Kind
from tests.edge.conftest import Collector, wait_until
from tests.edge.models import release, write_files

QOS1 = (Kind.EVENT, Kind.HARD, Kind.FEAT)


def _key(kind: Kind, v) -> tuple[int, int]:
    return v.boot, v.seq


def test_outage_every_qos1_message_arrives_exactly_once_in_order(make_agent, mqtt_factory, fresh_broker, topics,
                                                                  tmp_path):
    # Prepare: a broker that can persist the sink's durable session across its restart, and
    # a paced replay that keeps producing events, escalations and feature batches
    agent = make_agent(target=fresh_broker, start=False,
                       source={"type": "replay", "split": "all", "loop": False, "limit": 900, "fps": 150.0},
                       capture={"start_after_model": True},
                       features={"batch_size": 8, "max_age_s": 0.5},
                       decision={"policy": {"type": "max_prob", "threshold": 0.6}, "reply_deadline_s": 0.3,
                                 "audit_rate": 0.05, "rate_limit": 1000.0, "burst": 1000},
                       telemetry={"interval_s": 0.5},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    col = Collector(topics)
    sink = mqtt_factory(client_id=f"sink-{uuid.uuid4().hex[:8]}", target=fresh_broker, clean_start=False,
                        session_expiry=600, backoff_max=0.5)
    sink.subscribe_and_wait(topics.device_tree(agent.cfg.device), 1, col)
    qos1 = lambda: sum(col.count(k) for k in QOS1)  # noqa: E731
    # Execute: run, cut the broker for a while, bring it back on the same port
    agent.start()
    wait_until(lambda: qos1() >= 20, what="traffic before the outage")
    fresh_broker.stop()
    at_stop = agent.seq_issued
    wait_until(lambda: agent.seq_issued >= at_stop + 60 and agent.outbox.depth() >= 40, what="backlog in outbox")
    during = agent.seq_issued - at_stop
    fresh_broker.start()
    wait_until(agent.source_done.is_set, timeout=60, what="end of replay")
    wait_until(lambda: agent.outbox.depth() == 0, timeout=30, what="outbox drained")
    total = agent.seq_issued
    wait_until(lambda: len({_key(k, v) for k in QOS1 for v in col.of(k)}) >= total, timeout=30,
               what="every QoS 1 message at the sink")
    # Assert: dedup by (device, boot, seq), then exactly the produced set, in order per class
    dedup = Deduper()
    firsts: dict[Kind, list[int]] = {k: [] for k in QOS1}
    with col.lock:
        items = list(col.items)
    for kind, v, _ in items:
        if kind in QOS1 and dedup.first_time(agent.cfg.device, v.boot, v.seq):
            firsts[kind].append(v.seq)
    got = sorted(s for seqs in firsts.values() for s in seqs)
    assert got == list(range(total)), (len(got), total)
    for kind, seqs in firsts.items():
        assert seqs == sorted(seqs), f"{kind} out of order"
        assert seqs, f"no {kind} at all"
    assert during >= 60 and agent.counters.get("mqtt.disconnects") >= 1
    # Telemetry made during the outage was kept and sent late, without taking QoS 1 seqs (checked above).
    assert agent.counters.get("outbox.stored.telemetry") >= 1
    assert agent.counters.get("outbox.sent.telemetry") == agent.counters.get("outbox.stored.telemetry")
    for c in ("outbox.evicted", "outbox.refused", "outbox.expired"):
        assert agent.counters.total(c) == 0, c
    assert not col.bad


def test_large_backlog_does_not_hold_up_startup_or_live_alerts(make_agent, collect, topics, tmp_path):
    # Prepare: 3000 feature batches left on disk by an earlier boot
    from edge_agent.outbox import Outbox

    agent = make_agent(start=False, source={"type": "replay", "split": "all", "loop": False, "fps": 100.0},
                       capture={"start_after_model": True}, outbox={"inflight": 8},
                       events={"alert_classes": ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"]},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    ob = Outbox(agent.cfg.outbox_path, max_bytes=1 << 30).open()
    old_topic = str(topics.feat(agent.cfg.device, "front"))
    for seq in range(3000):
        ob.put("feat", old_topic, b"old" * 300, qos=1, boot=1, seq=seq)
    ob.close()
    col = collect(topics, agent.cfg.device)
    # Execute
    agent.start()
    wait_until(lambda: col.count(Kind.EVENT) >= 5, what="live events")
    # Assert: live alerts went out while the old backlog was still draining, and it drains fully
    assert agent.outbox.depth("feat") > 0
    wait_until(lambda: agent.outbox.depth("feat") == 0, timeout=60, what="backlog drained")
    assert agent.counters.get("outbox.sent.feat") >= 3000
