"""A message the bridge rejects is acknowledged once counted: never redelivered, never holding a slot."""

from __future__ import annotations

import pytest

from hub_bridge.bridge import HubBridge

from .helpers import bridge_config, event, start_bridge, wait_until

pytestmark = pytest.mark.broker

SMALL = {"event": {"capacity": 8}, **{n: {"capacity": 2} for n in ("escalation", "label", "feature", "telemetry")}}
POISON = [b'{"schema":1,"kind":"status","device":"cam-9","state":"online","boot":' + b"9" * 5000 + b',"ts":1}',
          b"[" * 30000 + b"]" * 30000, b'{"schema":1,"kind":"status","ts":NaN}', b"\xff\xfe", b"", b"{"]


def test_poison_status_is_acked_so_it_neither_comes_back_nor_blocks_the_connection(broker, topics, mqtt_factory,
                                                                                    bridges):
    # Prepare: a receive window of 13 on the hi connection, which carries statuses, events and escalations
    pub = mqtt_factory()
    cfg = bridge_config(broker, topics, receive_maximum=13, classes=SMALL)
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    # Execute: more poison than the window holds, then events on the same connection
    n_poison = 0
    for i in range(4):
        for p in POISON[:4]:  # non-empty, non-retained: each must be counted and acked
            pub.publish(topics.status(f"cam-{i}"), p, qos=1)
            n_poison += 1
    for seq in range(5):
        pub.publish(topics.event("cam-1", "front"), event("cam-1", seq), qos=1)
    # Assert: the events got through the window the poison would otherwise occupy
    assert wait_until(lambda: b.delivered[0] == 5, 10), b.snapshot()[0]
    counters = b.snapshot()[0]
    rejected = sum(v for k, v in counters.items() if k.startswith("rejected.status."))
    assert rejected == n_poison, counters
    assert counters["rejected.status.not_json"] == n_poison
    # Execute: restart with the same durable session
    b.stop()
    bridges.remove(b)
    b2 = HubBridge(cfg).start()
    bridges.append(b2)
    assert b2.wait_connected(10)
    pub.publish(topics.event("cam-1", "front"), event("cam-1", 99), qos=1)
    assert wait_until(lambda: b2.delivered[0] == 1, 10)
    # Assert: nothing rejected came back into the new process
    assert not [k for k in b2.snapshot()[0] if k.startswith("rejected.status.")], b2.snapshot()[0]
