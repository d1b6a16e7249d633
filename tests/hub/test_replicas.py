"""Two replicas on one shared subscription split the load; each message is handled by exactly one."""

from __future__ import annotations

from collections import Counter

import pytest

from shared.protocol.containers import FusedBatch, HardSample

from .helpers import Collector, bridge_config, feat, hard, labels, start_bridge, wait_until

pytestmark = pytest.mark.broker


def test_shared_subscription_splits_load_and_labels_reach_the_replica_with_the_row(broker, topics, mqtt_factory,
                                                                                    bridges):
    # Prepare
    pub, worker = mqtt_factory(), mqtt_factory()
    a = start_bridge(bridge_config(broker, topics, share_group="hub"), pub, topics)
    bridges.append(a)
    b = start_bridge(bridge_config(broker, topics, share_group="hub"), pub, topics)
    bridges.append(b)
    out = Collector(worker).add(topics.hub_infers()).add(topics.hub_batches())
    n = 200

    # Execute: labels first (every replica gets them), then rows (each to one replica)
    pub.publish(topics.label("cam-1", "front"), labels("cam-1", [(s, s % 10) for s in range(n)]), qos=1)
    assert wait_until(lambda: a.delivered[2] == 1 and b.delivered[2] == 1)
    for seq in range(n):
        pub.publish(topics.hard("cam-1", "front"), hard("cam-1", seq), qos=1)
        pub.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, [seq]), qos=1)

    def result():
        hards = Counter(HardSample.decode(m.payload).seq for m in out.matching(lambda m: "/infer/" in m.topic))
        rows: dict[int, list[int]] = {}
        for m in out.matching(lambda m: "/batch/" in m.topic):
            fb = FusedBatch.decode(m.payload)
            for s, y in zip(fb.sample.tolist(), fb.label.tolist(), strict=True):
                rows.setdefault(s, []).append(y)
        return hards, rows

    done = wait_until(lambda: len(result()[0]) == n and len(result()[1]) == n, 15)
    hards, rows = result()

    # Assert
    assert done
    assert all(c == 1 for c in hards.values())
    assert rows == {s: [s % 10] for s in range(n)}
    assert a.delivered[1] > 0 and b.delivered[1] > 0  # both replicas took a share
    assert a.delivered[1] + b.delivered[1] == n
