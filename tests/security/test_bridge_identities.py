"""The hub bridge against the secure broker: one identity per connection, no self-takeover."""

from __future__ import annotations

import time

import numpy as np

from hub_bridge.bridge import HubBridge
from hub_bridge.config import BridgeConfig
from shared.protocol.containers import FeatureBatch, HardSample

from .conftest import publish_ack, subscribe


def test_bridge_runs_with_two_identities_and_forwards(secure_env, connect):
    # Prepare: the bridge's hi connection as bridge_1, its bulk connection as bridge_1-bulk
    hi = secure_env.settings("bridge_1")
    bulk = secure_env.settings("bridge_1-bulk")
    cfg = BridgeConfig(id="bridge-sec", mqtt=hi, bulk_username=bulk.username, bulk_password=bulk.password,
                       session_expiry=0)
    worker = connect("worker_1")
    infer, _ = subscribe(worker, secure_env.topics.hub_infers())
    batches, _ = subscribe(worker, secure_env.topics.hub_batches())
    bridge = HubBridge(cfg)
    bridge.start()
    try:
        assert bridge.wait_connected(10), [c.last_connect_error for c in bridge.clients]
        d1 = connect("d1")
        t = secure_env.topics
        now = np.array([time.time()])
        hs = HardSample("d1", "cam", "digits", 5, 1, 1, np.array([7]), np.zeros((1, 1, 8, 8), np.float32),
                        np.zeros((1, 4), np.float32), np.full((1, 10), 0.1, np.float32), now)
        fb = FeatureBatch("d1", "cam", "digits", 5, 2, 1, np.array([8]), np.zeros((1, 4), np.float32),
                          np.full((1, 10), 0.1, np.float32), now)
        # Execute
        assert publish_ack(d1, t.hard("d1", "cam"), hs.encode()) == 0
        assert publish_ack(d1, t.feat("d1", "cam"), fb.encode()) == 0
        # Assert: both hops went through, and neither bridge connection knocked the other off
        assert infer.wait_for(lambda ms: len(ms) >= 1, timeout=10)
        assert batches.wait_for(lambda ms: len(ms) >= 1, timeout=10)
        assert all(c.counters.get("mqtt.connects") == 1 and c.connected for c in bridge.clients)
    finally:
        bridge.stop()
        # hub/status is retained: clear it so other tests' observers start from an empty tree
        assert publish_ack(connect("bridge_1"), secure_env.topics.hub_status(), b"", retain=True) < 0x80
