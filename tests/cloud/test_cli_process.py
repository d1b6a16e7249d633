"""`python -m cloud_worker run` as a real process: serves, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.protocol.schemas import Reply, ServiceStatus, loads

from .helpers import Collector, hard_sample

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def test_run_process_answers_and_goes_offline_on_sigterm(tmp_path, keydir, broker, topics, mqtt_factory,
                                                         registry_copy):
    reg = registry_copy()
    conf = tmp_path / "worker.toml"
    conf.write_text(f'root = "{topics.root}"\nworker_id = "proc-1"\nregistry = "{reg}"\n'
                    f'signing_key = "{keydir / "signing.key"}"\nstatus_interval_s = 0.5\n'
                    f'[mqtt]\nport = {broker.port}\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    sub = mqtt_factory()
    status, replies = Collector(), Collector()
    sub.subscribe_and_wait(topics.cloud_status("proc-1"), 1, status)
    sub.subscribe_and_wait(topics.reply("cam-1"), 1, replies)
    since = time.time()
    proc = subprocess.Popen([sys.executable, "-m", "cloud_worker", "run", "--config", str(conf), "--duration", "120"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert status.wait_for(lambda items: any(
            (s := loads(m.payload, ServiceStatus)).state == "online" and s.ts > since and "digits.version" in s.gauges
            for m in items), 60), proc.stdout.read1().decode() if proc.poll() is not None else "no status"
        time.sleep(0.3)  # subscriptions go out before the status thread starts; give SUBACK a moment

        sub.publish(topics.hub_infer("digits"), hard_sample("digits", np.array([3])).encode(), qos=1,
                    response_topic=topics.reply("cam-1"), correlation_data=b"proc")

        assert replies.wait_for(lambda items: bool(items), 20)
        r = loads(replies.items[0].payload, Reply)
        assert (replies.items[0].correlation_data, r.worker, r.sample) == (b"proc", "proc-1", 3)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert status.wait_for(lambda items: loads(items[-1].payload, ServiceStatus).state == "offline", 10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_sigterm_in_the_middle_of_a_retrain_stops_within_seconds(tmp_path, keydir, broker, topics, mqtt_factory,
                                                                   registry_copy):
    # A retrain that would take hours (100,000 epochs of the edge model, and of the cloud model's refresh on
    # its own thread) starts on the first labelled batch.
    from cloud_worker.registry import Registry
    from lepton_tasks import load_task

    from .helpers import fused_batch

    reg = registry_copy()
    conf = tmp_path / "worker.toml"
    conf.write_text(f'root = "{topics.root}"\nworker_id = "proc-2"\nregistry = "{reg}"\n'
                    f'signing_key = "{keydir / "signing.key"}"\nstatus_interval_s = 0.5\nack_interval_s = 0.2\n'
                    f'[mqtt]\nport = {broker.port}\n[triggers]\nmin_new_labels = 1\ncooldown_s = 0\n'
                    f'[training]\ncloud_refresh_epochs = 100000\ncloud_refresh_rows = 1\nwhole_epochs = 100000\n'
                    f'whole_min_raw = 5\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEPTON_")}
    sub = mqtt_factory()
    status = Collector()
    sub.subscribe_and_wait(topics.cloud_status("proc-2"), 1, status)
    proc = subprocess.Popen([sys.executable, "-m", "cloud_worker", "run", "--config", str(conf), "--duration", "300"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert status.wait_for(lambda items: any("digits.version" in loads(m.payload, ServiceStatus).gauges
                                                 and loads(m.payload, ServiceStatus).state == "online"
                                                 for m in items), 60)
        stream = load_task("digits").dataset().stream[:10]
        replies = Collector()
        sub.subscribe_and_wait(topics.reply("cam-1"), 1, replies)
        for i, s in enumerate(stream):  # escalations with their samples: the cloud learns from them once labelled
            sub.publish(topics.hub_infer("digits"), hard_sample("digits", np.array([s]), seq=i).encode(), qos=1,
                        response_topic=topics.reply("cam-1"), correlation_data=b"%d" % i)
        assert replies.wait_for(lambda items: len(items) == len(stream), 30)
        onnx = Registry(reg).latest("digits").onnx
        sub.publish(topics.hub_batch("digits"), fused_batch("digits", onnx, 1, stream).encode(), qos=1)
        assert status.wait_for(lambda items: loads(items[-1].payload, ServiceStatus).counters.get(
            "learn.trigger.labels", 0) >= 1, 30)  # the retrain is under way
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        took = time.monotonic() - t0
        out = proc.stdout.read().decode()
        assert rc == 0, out[-2000:]
        assert took < 10, took
        assert "stopping in the middle of a retrain" in out
        assert status.wait_for(lambda items: loads(items[-1].payload, ServiceStatus).state == "offline", 10)
        final = loads(status.items[-1].payload, ServiceStatus).counters
        assert final.get("learn.interrupted") == 1 and final.get("learn.published", 0) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
