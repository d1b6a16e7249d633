"""The worker learns from each row once, and acknowledges a fused batch only once it holds it on disk."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from cloud_worker.learning.learned import LearnedSet
from cloud_worker.service import WorkerService
from lepton_tasks import load_task
from shared.protocol import schemas

from .conftest import make_config
from .helpers import Collector, fused_batch
from .test_service_broker import wait_until

pytestmark = pytest.mark.broker


def test_learned_set_counts_information_not_copies():
    s = LearnedSet(capacity=3)
    assert s.admit(("d", 1), -1)  # unseen
    assert not s.admit(("d", 1), -1)  # a copy
    assert s.admit(("d", 1), 4)  # the label arrived later: new information
    assert not s.admit(("d", 1), 4) and not s.admit(("d", 1), -1)  # copies, with or without the label
    assert s.admit(("d", 1), 5)  # corrected
    for i in range(2, 5):
        s.admit(("d", i), 0)
    assert len(s) == 3 and s.admit(("d", 1), 5)  # the oldest was forgotten (bounded)
    t = LearnedSet()
    assert t.load_arrays(s.to_arrays()) == 3 and not t.admit(("d", 4), 0)


def test_copies_are_learned_once_and_acks_follow_the_saved_buffer(tmp_path, keydir, broker, topics, mqtt_factory,
                                                                registry_copy):
    # Prepare: a worker with a fast ack cadence and no retraining in the way
    registry_copy()
    cfg = make_config(tmp_path, keydir, broker, topics, worker_id="w1", ack_interval_s=0.2,
                      triggers={"min_new_labels": 100_000, "interval_s": 3600.0})
    w = WorkerService(cfg).start()
    hub = mqtt_factory()
    acks = Collector()
    buffer = w.registry.task_dir("digits") / "buffer.npz"
    on_disk: list[int] = []
    lock = threading.Lock()

    def ack_seen(m):
        # What the ack promises must already be on disk when it arrives.
        with np.load(buffer) as z:
            n = len(z["learned_sample"])
        with lock:
            on_disk.append(n)
        acks(m)

    hub.subscribe_and_wait(topics.hub_ack("hub-1"), 1, ack_seen)
    stream = load_task("digits").dataset().stream
    onnx = w.learners["digits"].deployed.onnx
    first = fused_batch("digits", onnx, 1, stream[:40], seq=1)
    unlabelled = fused_batch("digits", onnx, 1, stream[40:60], seq=2, labels=np.full(20, -1))
    # Execute: each batch twice (QoS 1 redelivery, a republish), the unlabelled rows later with labels
    try:
        for fb in (first, first, unlabelled, unlabelled, fused_batch("digits", onnx, 1, stream[40:60], seq=3)):
            hub.publish(topics.hub_batch("digits"), fb.encode(), qos=1)
        assert acks.wait_for(lambda items: {s for m in items for lo, hi in
                                             schemas.loads(m.payload, schemas.BatchAck).ranges
                                             for s in range(lo, hi + 1)} == {1, 2, 3}, 20), w.counters.snapshot()
        c = w.counters
        # Assert: 40 + 20 labelled rows learned once; the copies skipped
        assert wait_until(lambda: c.get("learn.rows.labelled") == 60, 5), c.snapshot()
        assert c.get("learn.rows.duplicate") == 40 + 20
        a = schemas.loads(acks.items[0].payload, schemas.BatchAck)
        assert (a.bridge, a.boot, a.task, a.worker) == ("hub-1", first.boot, "digits", "w1")
        assert all(n >= 40 for n in on_disk), on_disk
    finally:
        w.stop()
    assert not w.errors
    # Execute: a restarted worker gets one more copy
    w2 = WorkerService(cfg).start()
    try:
        hub.publish(topics.hub_batch("digits"), first.encode(), qos=1)
        assert wait_until(lambda: w2.counters.get("learn.rows.duplicate") == 40, 20), w2.counters.snapshot()
        assert w2.counters.get("learn.rows.labelled") == 0
    finally:
        w2.stop()
    assert not w2.errors
