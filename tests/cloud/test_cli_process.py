"""`python -m cloud_worker run` as a real process: serves, answers, stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from shared.schemas import Reply, ServiceStatus, loads

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
