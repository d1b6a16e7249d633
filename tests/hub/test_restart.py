"""kill -9 the bridge process under load, restart it: no QoS 1 message lost, duplicates dropped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from shared.protocol.containers import FusedBatch, HardSample

from .helpers import Collector, feat, hard, telemetry, wait_until

pytestmark = [pytest.mark.broker, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def spawn_bridge(conf: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "hub_bridge", "--config", str(conf), "--log-level", "WARNING"],
                            cwd=REPO, stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def test_kill_9_under_load_loses_nothing_and_drops_duplicates(broker, topics, mqtt_factory, tmp_path):
    # Prepare
    bid = f"b{uuid.uuid4().hex[:6]}"
    conf = tmp_path / "bridge.toml"
    conf.write_text(f'root = "{topics.root}"\nid = "{bid}"\nstatus_interval = 0.3\n'
                    f'[mqtt]\nport = {broker.port}\n[fusion]\nlabel_wait = 0.1\nbatch_age = 0.2\nbatch_size = 128\n')
    dev, worker, mon = mqtt_factory(), mqtt_factory(), mqtt_factory()
    out = Collector(worker).add(topics.hub_infers()).add(topics.hub_batches())
    status = Collector(mon).add(topics.hub_status())
    log = tmp_path / "bridge.log"
    proc = spawn_bridge(conf, log)
    try:
        # Ready when the bulk connection is subscribed too (a telemetry probe shows up in hub/status).
        def delivered_telemetry() -> int:
            ms = status.matching()
            return json.loads(ms[-1].payload)["counters"].get("delivered.telemetry", 0) if ms else 0

        for _ in range(40):
            dev.publish(topics.telemetry("probe"), telemetry("probe"), qos=1)
            if wait_until(lambda: delivered_telemetry() > 0, 0.5):
                break
        assert delivered_telemetry() > 0, log.read_text()[-2000:]
        n, rows = 600, 4
        sent_hard: list[int] = []
        stop = threading.Event()

        def load() -> None:
            for seq in range(n):
                if stop.is_set():
                    return
                dev.publish(topics.hard("cam-1", "front"), hard("cam-1", seq), qos=1)
                dev.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, range(seq * rows, seq * rows + rows)),
                            qos=1)
                sent_hard.append(seq)
                time.sleep(0.004)

        # Execute: kill -9 mid-stream, restart while the devices keep sending
        th = threading.Thread(target=load)
        th.start()
        assert wait_until(lambda: len(sent_hard) > n // 3, 20)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        killed_at = len(sent_hard)
        # The broker publishes the bridge's last will: hub/status goes offline.
        lwt = wait_until(lambda: json.loads(status.matching()[-1].payload)["state"] == "offline", 5)
        proc = spawn_bridge(conf, log)
        th.join(30)
        # An edge outbox replaying what it already sent (after the restart): must be dropped.
        replay = list(range(n - 50, n))
        for seq in replay:
            dev.publish(topics.hard("cam-1", "front"), hard("cam-1", seq), qos=1)
            dev.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, range(seq * rows, seq * rows + rows)), qos=1)

        def outputs():
            hards = Counter(HardSample.decode(m.payload).seq for m in out.matching(lambda m: "/infer/" in m.topic))
            samples: Counter = Counter()
            for m in out.matching(lambda m: "/batch/" in m.topic):
                samples.update(int(s) for s in FusedBatch.decode(m.payload).sample)
            return hards, samples

        complete = wait_until(lambda: len(outputs()[0]) == n and len(outputs()[1]) == n * rows, 30, 0.2)
        dups = wait_until(lambda: delivered_dups(status) >= 2 * len(replay), 10, 0.1)
        hards, samples = outputs()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)

    # Assert: the last will announced the death, and nothing was lost ...
    assert lwt
    assert complete, (len(hards), len(samples), log.read_text()[-2000:])
    assert set(hards) == set(range(n)) and set(samples) == set(range(n * rows))
    # ... replays after the restart were all dropped ...
    assert dups, json.loads(status.matching()[-1].payload)["counters"]
    assert all(hards[s] == 1 for s in replay) and all(samples[s * rows] == 1 for s in replay)
    # ... and re-sends are confined to what was in flight when the process died.
    resent = [s for s, c in hards.items() if c > 1]
    assert len(resent) <= killed_at and all(s <= killed_at + 5 for s in resent)


def delivered_dups(status: Collector) -> int:
    ms = status.matching()
    if not ms:
        return 0
    c = json.loads(ms[-1].payload)["counters"]
    return c.get("duplicate.escalation", 0) + c.get("duplicate.feature", 0)
