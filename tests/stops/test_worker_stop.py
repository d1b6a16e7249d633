"""The worker stops in the middle of a retrain, on a box with every core busy, within half of `lepton up`'s
kill timeout, exits 0, and what it acknowledged is on disk.

A real worker process per round, on one registry (each round restarts on what the last one saved): the
agents' escalations (samples the cloud answers and keeps), then a fused batch labelling them, which
starts a retrain that would take hours (the edge's whole-model fit, and the cloud model's refresh on its
own thread: the CNN of the camera, MiniRocket and its ridge for a window task). A hog on every core,
then SIGTERM at a different moment each round.
"""

from __future__ import annotations

import sqlite3
import sys
import time

import numpy as np
import pytest

from cloud_worker.registry import Registry
from lepton_tasks import load_task
from shared.protocol.schemas import BatchAck, ServiceStatus, loads
from tests.cloud.helpers import Collector, fused_batch, hard_sample

from .conftest import BOUND_S, reap, sigterm, spawn, within_bound

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROUNDS = 3
PER_ROUND = 24  # labelled samples a round adds (escalated first, so the raw store holds them)


def _config(tmp_path, keydir, broker, topics, reg) -> str:
    conf = tmp_path / "worker.toml"
    conf.write_text(f'root = "{topics.root}"\nworker_id = "stop-1"\nregistry = "{reg}"\n'
                    f'signing_key = "{keydir / "signing.key"}"\nstatus_interval_s = 0.3\nack_interval_s = 0.2\n'
                    f'[mqtt]\nport = {broker.port}\n[triggers]\nmin_new_labels = 1\ncooldown_s = 0\n'
                    f'[training]\nthreads = 2\nbootstrap_epochs = 5\ncloud_epochs = 3\ncloud_refresh_epochs = 100000\n'
                    f'cloud_refresh_rows = 1\nwhole_epochs = 100000\nwhole_min_raw = 5\n')
    return str(conf)


def _status(status: Collector, since: float, pred) -> bool:
    def ok(items) -> bool:
        for m in items:
            s = loads(m.payload, ServiceStatus)
            if s.ts > since and pred(s):
                return True
        return False

    return status.wait_for(ok, 120)


@pytest.mark.parametrize("task", ["industrial", "camera"])
def test_a_worker_stopped_in_the_middle_of_a_retrain_under_load_saves_acks_and_exits_0(
        task, tmp_path, keydir, broker, topics, mqtt_factory, hog):
    reg = tmp_path / "registry"
    conf = _config(tmp_path, keydir, broker, topics, reg)
    sub = mqtt_factory()
    status, replies, acks = Collector(), Collector(), Collector()
    sub.subscribe_and_wait(topics.cloud_status("stop-1"), 1, status)
    sub.subscribe_and_wait(topics.reply("cam-1"), 1, replies)
    sub.subscribe_and_wait(topics.hub_ack("hub-1"), 1, acks)
    stream = load_task(task).dataset().stream
    took = []
    for rnd in range(ROUNDS):
        since = time.time()
        log = tmp_path / f"worker-{rnd}.log"
        proc = spawn([sys.executable, "-m", "cloud_worker", "run", "--config", conf, "--task", task,
                      "--duration", "600"], log)
        try:
            # Online, with a cloud model to answer (and keep) the escalations.
            assert _status(status, since, lambda s: s.state == "online" and s.gauges.get(f"{task}.cloud_generation")), \
                "the worker did not come online with a cloud model"
            time.sleep(0.3)  # its subscriptions go out before the status thread starts
            idx = stream[rnd * PER_ROUND:(rnd + 1) * PER_ROUND]
            want = len(replies.items) + -(-len(idx) // 8)
            for i in range(0, len(idx), 8):  # escalations with their samples, as agents send them
                sub.publish(topics.hub_infer(task), hard_sample(task, idx[i:i + 8], seq=rnd * 100 + i).encode(),
                            qos=1, response_topic=topics.reply("cam-1"), correlation_data=b"%d" % i)
            assert replies.wait_for(lambda items, want=want: len(items) >= want, 60)
            time.sleep(0.5)  # the answered samples reach the learner's queue after their replies
            onnx = Registry(reg).latest(task).onnx
            sub.publish(topics.hub_batch(task), fused_batch(task, onnx, 1, idx, seq=rnd + 1).encode(), qos=1)
            assert _status(status, since, lambda s: s.counters.get("learn.trigger.labels", 0) >= 1)
            hog.start()
            time.sleep(0.5 + 1.0 * rnd)  # a different step of the retrain each round
            assert hog.busy()
            stopped = sigterm(proc, log)
        finally:
            hog.stop()
            reap(proc)
        within_bound(stopped, took)
        # Acknowledged: every fused batch so far; and on disk, every row of them and every escalated sample.
        assert acks.wait_for(lambda items, seq=rnd + 1: any(
            a.task == task and any(lo <= seq <= hi for lo, hi in a.ranges)
            for a in (loads(m.payload, BatchAck) for m in items)), 10)
        sent = {("cam-1", int(s)) for s in stream[:(rnd + 1) * PER_ROUND]}
        buf = np.load(reg / task / "buffer.npz")
        assert sent <= set(zip(buf["f_device"].tolist(), buf["f_sample"].tolist(), strict=True))
        with sqlite3.connect(reg / task / "raw.sqlite") as db:
            raw = {(d, s) for d, s in db.execute("SELECT device, sample FROM raw")}
        assert sent <= raw
    print(f"{task}: stop took {took} s (bound {BOUND_S} s)")
