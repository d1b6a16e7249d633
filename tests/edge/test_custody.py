"""Custody at the edge: a QoS 1 row outlives its PUBACK until the bridge says its fate is final."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from edge_agent.outbox import Outbox
from hub_bridge.bridge import HubBridge
from hub_bridge.config import BridgeConfig
from shared.protocol import schemas
from shared.protocol.containers import FusedBatch
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until
from tests.edge.models import release, write_files


def test_outbox_keeps_sent_rows_until_released_and_hands_them_out_again_with_backoff(tmp_path):
    ob = Outbox(tmp_path / "o.sqlite", max_bytes=1 << 20).open()
    for seq in range(6):
        ob.put("feat", "t", b"x" * 10, qos=1, boot=7, seq=seq)
    rows = ob.next_rows({"feat": 0}, 10)
    ob.mark_sent([r.id for r in rows], now=100.0)
    # Sent: no longer handed out as new, still held
    assert ob.next_rows({"feat": 0}, 10) == [] and ob.depth() == 6 and ob.awaiting_custody() == 6
    assert ob.release(7, [(0, 1), (4, 4)]) == 3
    assert ob.release(8, [(0, 99)]) == 0  # another boot's custody touches nothing
    assert sorted(r.seq for r in ob.next_rows({"feat": 0}, 10)) == []
    assert ob.depth() == 3 and ob.custodied["feat"] == 3
    # Not released: due again after the timeout (30 s), then after twice that
    assert ob.due_resends(129.0, 30.0, 600.0, 10) == []
    due = ob.due_resends(130.0, 30.0, 600.0, 10)
    assert sorted(r.seq for r in due) == [2, 3, 5] and all(r.attempts == 1 for r in due)
    assert ob.due_resends(130.0, 30.0, 600.0, 10, skip={due[0].id}) and len(ob.due_resends(130.0, 30.0, 600.0, 1)) == 1
    ob.mark_sent([r.id for r in due], now=130.0)
    assert ob.due_resends(189.0, 30.0, 600.0, 10) == [] and len(ob.due_resends(190.0, 30.0, 600.0, 10)) == 3
    ob.close()


def test_outbox_from_an_earlier_build_gains_the_custody_columns(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, cls TEXT NOT NULL,
        topic TEXT NOT NULL, qos INTEGER NOT NULL, payload BLOB NOT NULL, size INTEGER NOT NULL,
        created REAL NOT NULL, boot INTEGER NOT NULL, seq INTEGER NOT NULL, response_topic TEXT, correlation BLOB);
        INSERT INTO outbox (cls, topic, qos, payload, size, created, boot, seq) VALUES ('event','t',1,x'00',1,1.0,3,0);""")
    db.commit()
    db.close()
    ob = Outbox(path, max_bytes=1 << 20).open()
    assert [r.seq for r in ob.next_rows({"event": 0}, 5)] == [0] and ob.depth() == 1
    ob.close()


@pytest.fixture
def bridge(broker, topics):
    cfg = BridgeConfig.model_validate({
        "root": topics.root, "id": "bridge-c", "mqtt": {"port": broker.port}, "status_interval": 0.3,
        "custody": {"interval_s": 0.2, "republish_s": 1.0},
        "fusion": {"batch_size": 16, "batch_age": 0.2, "label_wait": 0.1}})
    b = HubBridge(cfg).start()
    assert b.wait_connected(10)
    yield b
    b.stop()
    assert not b.errors


def _acking_worker(mqtt_factory, topics, bridge_id: str):
    """A stand-in worker that acknowledges every fused batch it sees, and counts them."""
    c = mqtt_factory()
    seen: list[int] = []
    lock = threading.Lock()

    def on(m):
        fb = FusedBatch.decode(m.payload)
        with lock:
            seen.append(fb.seq)
        ack = schemas.BatchAck(bridge=fb.bridge, boot=fb.boot, task=fb.task, ranges=[(fb.seq, fb.seq)], worker="w",
                               ts=0.0)
        c.publish(topics.hub_ack(bridge_id), schemas.dumps(ack), qos=1)

    c.subscribe_and_wait(topics.hub_batches(), 1, on)
    return seen


@pytest.mark.broker
def test_agent_holds_every_row_until_the_bridge_gives_custody(make_agent, mqtt_factory, topics, bridge, tmp_path):
    # Prepare: custody on, a real bridge, a worker that acks only once the test says so
    agent = make_agent(start=False, source={"type": "replay", "split": "all", "loop": False, "limit": 150,
                                            "fps": 300.0},
                       capture={"start_after_model": True}, features={"batch_size": 8, "max_age_s": 0.3},
                       decision={"policy": {"type": "max_prob", "threshold": 0.6}, "rate_limit": 1000.0,
                                 "burst": 1000, "reply_deadline_s": 0.2},
                       events={"alert_classes": ["0", "1"]},
                       outbox={"custody": True, "custody_timeout_s": 1.0},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    agent.start()
    wait_until(agent.source_done.is_set, timeout=30, what="end of replay")
    # Assert: events and escalations are in custody at once; feature batches wait for a worker. The
    # hub has gone quiet (no custody for 1 s), so the agent does not pile copies into its queue.
    wait_until(lambda: agent.outbox.depth("event") == 0 and agent.outbox.depth("hard") == 0, what="hi custody")
    assert agent.outbox.depth("feat") > 0
    time.sleep(3.0)
    assert agent.outbox.depth("feat") > 0 and agent.counters.get("outbox.resent.feat") == 0
    # Execute: a worker arrives and acknowledges what it holds
    _acking_worker(mqtt_factory, topics, "bridge-c")
    wait_until(lambda: agent.outbox.depth() == 0, timeout=30, what="every row in custody")
    c = agent.counters
    assert c.get("outbox.custody_released") == agent.seq_issued
    assert c.get("custody.received") > 0
    assert c.total("outbox.evicted") == c.total("outbox.expired") == 0
    for cls in ("event", "hard", "feat"):
        assert c.get(f"outbox.stored.{cls}") > 0, cls


@pytest.mark.broker
def test_without_custody_a_puback_is_enough(make_agent, collect, topics, tmp_path):
    agent = make_agent(start=False, source={"type": "replay", "split": "all", "loop": False, "limit": 40},
                       capture={"start_after_model": True}, features={"batch_size": 8, "max_age_s": 0.2},
                       outbox={"custody": False},
                       model=write_files(release(topics, "digits", 1), tmp_path / "init"))
    col = collect(topics, agent.cfg.device)
    agent.start()
    wait_until(lambda: agent.source_done.is_set() and col.count(Kind.FEAT) >= 5, what="features sent")
    wait_until(lambda: agent.outbox.depth() == 0, what="deleted on PUBACK")
    assert agent.counters.get("outbox.custody_released") == 0
