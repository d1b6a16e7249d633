"""A stored message larger than the broker takes is dropped and counted, never retried, never blocking."""

from __future__ import annotations

from shared.protocol import schemas
from shared.protocol.topics import Kind
from tests.edge.conftest import wait_until


def test_a_row_above_the_broker_s_packet_limit_is_dropped_and_the_rest_flows(make_agent, collect, topics):
    # Prepare: an agent with no source to speak of, and two stored events, the first one 9 MiB
    agent = make_agent(source={"type": "replay", "split": "stream", "loop": False, "limit": 1})
    col = collect(topics, agent.cfg.device)
    topic = str(topics.event(agent.cfg.device, "front"))
    big = b"{" + b" " * (9 * 1024 * 1024) + b"}"
    ok = schemas.dumps(schemas.Event(device=agent.cfg.device, stream="front", task="digits", sample=1, label=3,
                                     name="3", confidence=0.9, boot=agent.boot, seq=10_001, ts=0.0))
    # Execute
    assert agent.outbox.put("event", topic, big, qos=1, boot=agent.boot, seq=10_000)
    assert agent.outbox.put("event", topic, ok, qos=1, boot=agent.boot, seq=10_001)
    agent.sender.notify()
    # Assert: the small one arrives, the big one is gone from the outbox, counted, the connection stayed
    wait_until(lambda: [e.seq for e in col.of(Kind.EVENT)] == [10_001], what="the small event")
    wait_until(lambda: agent.outbox.depth() == 0, what="an empty outbox")
    assert agent.counters.get("mqtt.publish_too_large") == 1 and agent.counters.get("outbox.denied.event") == 1
    assert agent.counters.get("mqtt.disconnects") == 0 and agent.client.connected and not col.bad
