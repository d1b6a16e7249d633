"""The bridge against a real mosquitto: forwarding with MQTT 5 properties, fusion, rejection, dedup, status."""

from __future__ import annotations

import json
import time

import pytest

from hub_bridge.classes import ESCALATION, EVENT
from shared.protocol import schemas
from shared.protocol.containers import FusedBatch, HardSample

from .helpers import (
    Collector,
    bridge_config,
    class_counts,
    event,
    feat,
    hard,
    labels,
    start_bridge,
    status,
    telemetry,
    wait_until,
)

pytestmark = pytest.mark.broker


def fused_rows(col: Collector) -> dict[tuple[str, int], list[int]]:
    out: dict[tuple[str, int], list[int]] = {}
    for m in col.matching():
        b = FusedBatch.decode(m.payload)
        for i in range(len(b.sample)):
            out.setdefault((b.devices[b.device_idx[i]], int(b.sample[i])), []).append(int(b.label[i]))
    return out


def test_escalation_keeps_response_topic_correlation_and_user_properties(broker, topics, mqtt_factory, bridges):
    # Prepare
    dev, pub, worker = mqtt_factory(), mqtt_factory(), mqtt_factory()
    bridges.append(start_bridge(bridge_config(broker, topics), pub, topics))
    infer = Collector(worker).add(topics.hub_infers())
    replies = Collector(dev).add(topics.edge_kind(schemas_kind_reply(), "cam-1"))
    payload = hard("cam-1", 1)
    props = dict(response_topic=topics.reply("cam-1"), correlation_data=b"\x00\xffcorr-1",
                 user_properties=[("trace", "t-42"), ("sample", "1")])

    # Execute
    dev.publish(topics.hard("cam-1", "front"), payload, qos=1, **props)
    assert wait_until(lambda: infer.matching(), 10)
    m = infer.matching()[0]
    worker.publish(topics.reply("cam-1") if m.response_topic is None else _topic(m.response_topic),
                   schemas.dumps(schemas.Reply(task="digits", sample=1, label=3, confidence=0.9, model="m",
                                               worker="w", ts=time.time())),
                   qos=1, correlation_data=m.correlation_data)
    assert wait_until(lambda: replies.matching(), 10)

    # Assert
    assert m.topic == str(topics.hub_infer("digits"))
    assert m.payload == payload
    assert m.response_topic == str(topics.reply("cam-1"))
    assert m.correlation_data == b"\x00\xffcorr-1"
    assert list(m.user_properties) == [("trace", "t-42"), ("sample", "1")]
    assert m.message_expiry is not None and 1 <= m.message_expiry <= 10
    assert replies.matching()[0].correlation_data == b"\x00\xffcorr-1"
    assert HardSample.decode(m.payload).seq == 1


def schemas_kind_reply():
    from shared.protocol.topics import Kind

    return Kind.REPLY


def _topic(s: str):
    from shared.protocol.topics import Topic

    return Topic(s)


def test_fusion_joins_labels_before_and_after_rows_and_counts_late_ones(broker, topics, mqtt_factory, bridges):
    # Prepare
    pub, worker = mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, fusion=dict(label_wait=0.5, batch_age=0.1, window=1.5))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    batches = Collector(worker).add(topics.hub_batches())
    lt = topics.label("cam-1", "front")

    # Execute: label for 1 before its row; label for 2 while the row waits; label for 3 after the row was sent
    pub.publish(lt, labels("cam-1", [(1, 7)]), qos=1)
    assert wait_until(lambda: b.delivered[2] >= 1)
    pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [1, 2, 3, 4]), qos=1)
    pub.publish(lt, labels("cam-1", [(2, 8)]), qos=1)
    assert wait_until(lambda: len(fused_rows(batches)) == 4, 10)
    pub.publish(lt, labels("cam-1", [(3, 9)]), qos=1)
    assert wait_until(lambda: len(fused_rows(batches).get(("cam-1", 3), [])) == 2, 10)
    time.sleep(2.0)  # beyond the 1.5 s window
    pub.publish(lt, labels("cam-1", [(4, 5)]), qos=1)
    late = wait_until(lambda: b.counters.get("labels.late") == 1, 10)

    # Assert
    rows = fused_rows(batches)
    assert rows[("cam-1", 1)] == [7]
    assert rows[("cam-1", 2)] == [8]
    assert rows[("cam-1", 3)] == [-1, 9]  # unlabelled row, then a label-only row
    assert rows[("cam-1", 4)] == [-1]
    assert late
    assert b.counters.get("labels.joined_late") == 1


def test_malformed_and_oversized_messages_are_counted_and_the_bridge_keeps_working(broker, topics, mqtt_factory,
                                                                                    bridges):
    # Prepare
    pub, worker = mqtt_factory(), mqtt_factory()
    cfg = bridge_config(broker, topics, classes=dict(event=dict(capacity=100, ttl=10, max_bytes=1024)))
    b = start_bridge(cfg, pub, topics)
    bridges.append(b)
    infer = Collector(worker).add(topics.hub_infers())
    garbage = b"\xff\x00not a payload"
    sends = [
        (topics.event("cam-1", "front"), garbage),
        (topics.event("cam-1", "front"), b"{" + b" " * 2000 + b"}"),  # oversized for this config
        (topics.event("cam-1", "front"), event("cam-2", 1)),  # device in payload differs from topic
        (topics.hard("cam-1", "front"), garbage),
        (topics.hard("cam-1", "front"), hard("cam-1", 5)[:-3]),  # truncated
        (topics.feat("cam-1", "front"), garbage),
        (topics.feat("cam-1", "front"), hard("cam-1", 6)),  # wrong container kind
        (topics.label("cam-1", "front"), b'{"schema": 1, "kind": "label"}'),
        (topics.telemetry("cam-1"), garbage),
        (topics.model_state("cam-1"), garbage),
        (topics.status("cam-9"), garbage),
    ]

    # Execute
    for topic, payload in sends:
        pub.publish(topic, payload, qos=1)
    pub.publish(topics.event("cam-1", "front"), event("cam-1", 1), qos=1)
    pub.publish(topics.hard("cam-1", "front"), hard("cam-1", 2), qos=1)
    got = wait_until(lambda: infer.matching() and b.delivered[EVENT] == 1, 10)
    counters = wait_until(lambda: _rejected(b) if sum(_rejected(b).values()) == 11 else None, 10)

    # Assert
    assert got and counters
    assert counters == {"rejected.event.not_json": 1, "rejected.event.oversized": 1,
                        "rejected.event.topic_mismatch": 1, "rejected.escalation.bad_magic": 1,
                        "rejected.escalation.truncated": 1, "rejected.feature.bad_magic": 1,
                        "rejected.feature.malformed": 1, "rejected.label.invalid": 1,
                        "rejected.telemetry.not_json": 2, "rejected.status.not_json": 1}
    assert b.delivered[ESCALATION] == 1
    snap, _ = b.snapshot()
    assert snap["device.rejected.event.cam-1"] == 3


def _rejected(b) -> dict[str, int]:
    return {k: v for k, v in b.counters.snapshot().items() if k.startswith("rejected.")}


def test_duplicates_dropped_by_device_boot_seq(broker, topics, mqtt_factory, bridges):
    # Prepare
    pub, worker = mqtt_factory(), mqtt_factory()
    b = start_bridge(bridge_config(broker, topics), pub, topics)
    bridges.append(b)
    infer = Collector(worker).add(topics.hub_infers())
    batches = Collector(worker).add(topics.hub_batches())

    # Execute: every message twice, plus the same seq under a new boot epoch (a reboot: not a duplicate)
    for _ in range(2):
        pub.publish(topics.event("cam-1", "front"), event("cam-1", 1), qos=1)
        pub.publish(topics.hard("cam-1", "front"), hard("cam-1", 1), qos=1)
        pub.publish(topics.feat("cam-1", "front"), feat("cam-1", 1, [1, 2]), qos=1)
    pub.publish(topics.hard("cam-1", "front"), hard("cam-1", 1, boot=1_800_000_000), qos=1)
    done = wait_until(lambda: class_counts(b)["escalation"]["duplicate"] == 1 and len(infer.matching()) == 2
                      and fused_rows(batches), 10)

    # Assert
    assert done, (class_counts(b), len(infer.matching()), fused_rows(batches))
    counts = class_counts(b)
    assert counts["event"]["delivered"] == 1 and counts["event"]["duplicate"] == 1
    assert counts["feature"]["delivered"] == 1 and counts["feature"]["duplicate"] == 1
    assert len(infer.matching()) == 2
    assert fused_rows(batches) == {("cam-1", 1): [-1], ("cam-1", 2): [-1]}


def test_status_tracks_devices_and_goes_offline_on_stop(broker, topics, mqtt_factory, bridges):
    # Prepare
    pub, mon = mqtt_factory(), mqtt_factory()
    b = start_bridge(bridge_config(broker, topics), pub, topics)
    statuses = Collector(mon).add(_filter(topics.hub_status()))

    # Execute
    pub.publish(topics.status("cam-1"), status("cam-1"), qos=1, retain=True)
    pub.publish(topics.status("cam-2"), status("cam-2"), qos=1, retain=True)
    pub.publish(topics.status("cam-2"), status("cam-2", "offline"), qos=1, retain=True)
    pub.publish(topics.telemetry("cam-1"), telemetry("cam-1"), qos=1)
    assert wait_until(lambda: "cam-1" in b.devices_online and "cam-2" not in b.devices_online)
    online = wait_until(lambda: [m for m in statuses.matching() if _devices(m) == 2.0], 5)  # cam-1 + probe
    b.stop()
    last = wait_until(lambda: statuses.matching()[-1] if json.loads(statuses.matching()[-1].payload)["state"]
                      == "offline" else None, 5)
    for d in ("cam-1", "cam-2"):
        pub.publish(topics.status(d), b"", qos=1, retain=True)

    # Assert
    assert online, [json.loads(m.payload)["gauges"].get("devices_online") for m in statuses.matching()]
    st = schemas.loads(online[-1].payload, schemas.ServiceStatus)
    assert st.service == "bridge" and st.state == "online"
    for name in ("event", "escalation", "label", "feature", "telemetry"):
        assert {f"queue.{name}", f"lag_s.{name}"} <= set(st.gauges)
        assert {f"in.{name}", f"delivered.{name}", f"dropped.{name}", f"expired.{name}"} <= set(st.counters)
    assert st.counters["delivered.telemetry"] >= 2  # the probe and cam-1's
    assert last is not None and schemas.loads(last.payload, schemas.ServiceStatus).state == "offline"


def _filter(topic):
    from shared.protocol.topics import Filter

    return Filter(str(topic))


def _devices(m) -> float:
    return json.loads(m.payload)["gauges"].get("devices_online", -1)
