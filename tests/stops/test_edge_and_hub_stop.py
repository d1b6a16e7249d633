"""The bridge and an agent stop with every core busy, in the middle of their traffic, within half of
`lepton up`'s kill timeout, exit 0, and lose nothing they acknowledged.

- bridge: devices keep sending escalations and feature rows while it is stopped, three times over;
  a last bridge (no hog) then hands on every one of them (each received message was PUBACKed, and
  its its queue at the broker holds what it did not take).
- agent: replaying the digits stream through a real model, with no bridge to take custody, so every
  row it sent stays in its outbox; after each stop the outbox on disk holds at least every row the
  broker delivered, and the next run goes on from it.
"""

from __future__ import annotations

import sqlite3
import sys
import threading
import time
import uuid
from collections import Counter

import pytest

from shared.protocol.containers import FusedBatch, HardSample
from shared.protocol.topics import Kind
from tests.edge.models import release, write_files
from tests.hub.helpers import Collector, feat, hard, telemetry, wait_until

from .conftest import BOUND_S, reap, sigterm, spawn, within_bound

pytestmark = [pytest.mark.broker, pytest.mark.slow]

ROUNDS = 3


def test_the_bridge_stopped_under_load_in_the_middle_of_traffic_exits_0_in_time_and_loses_nothing(
        broker, topics, mqtt_factory, tmp_path, hog):
    bid = f"b{uuid.uuid4().hex[:6]}"
    conf = tmp_path / "bridge.toml"
    conf.write_text(f'root = "{topics.root}"\nid = "{bid}"\nstatus_interval = 0.3\n'
                    f'[mqtt]\nport = {broker.port}\n[fusion]\nlabel_wait = 0.1\nbatch_age = 0.2\nbatch_size = 128\n')
    dev, worker, mon = mqtt_factory(), mqtt_factory(), mqtt_factory()
    out = Collector(worker).add(topics.hub_infers()).add(topics.hub_batches())
    status = Collector(mon).add(topics.hub_status())
    rows = 4
    sent: list[int] = []
    took = []

    def started(proc, log) -> None:
        # Ready when a telemetry probe shows up in this run's hub/status counters.
        since = len(status.matching())
        for _ in range(60):
            dev.publish(topics.telemetry("probe"), telemetry("probe"), qos=1)
            if wait_until(lambda: any(b"delivered.telemetry" in m.payload for m in status.matching()[since:]), 0.5):
                return
        raise AssertionError(log.read_text()[-2000:])

    for rnd in range(ROUNDS):
        log = tmp_path / f"bridge-{rnd}.log"
        proc = spawn([sys.executable, "-m", "hub_bridge", "--config", str(conf), "--log-level", "WARNING"], log)
        stop = threading.Event()

        def load(stop: threading.Event = stop) -> None:
            while not stop.is_set():
                seq = len(sent)
                dev.publish(topics.hard("cam-1", "front"), hard("cam-1", seq), qos=1)
                dev.publish(topics.feat("cam-1", "front"), feat("cam-1", seq, range(seq * rows, seq * rows + rows)),
                            qos=1)
                sent.append(seq)
                time.sleep(0.01)

        th = threading.Thread(target=load)
        try:
            started(proc, log)
            th.start()
            hog.start()
            time.sleep(1.0 + 0.5 * rnd)
            assert hog.busy()
            stopped = sigterm(proc, log)
        finally:
            stop.set()
            th.join(10)
            hog.stop()
            reap(proc)
        within_bound(stopped, took)
    # A last bridge, no hog: everything the devices sent (queued at the broker meanwhile, or taken in by a
    # bridge that stopped) is handed on.
    log = tmp_path / "bridge-last.log"
    proc = spawn([sys.executable, "-m", "hub_bridge", "--config", str(conf), "--log-level", "WARNING"], log)
    try:
        def outputs() -> tuple[Counter, Counter]:
            hards = Counter(HardSample.decode(m.payload).seq for m in out.matching(lambda m: "/infer/" in m.topic))
            samples: Counter = Counter()
            for m in out.matching(lambda m: "/batch/" in m.topic):
                samples.update(int(s) for s in FusedBatch.decode(m.payload).sample)
            return hards, samples

        n = len(sent)
        complete = wait_until(lambda: len(outputs()[0]) == n and len(outputs()[1]) == n * rows, 60, 0.2)
        hards, samples = outputs()
    finally:
        sigterm(proc, log)
    assert complete, (n, len(hards), len(samples), log.read_text()[-2000:])
    assert set(hards) == set(range(n)) and set(samples) == set(range(n * rows))
    print(f"bridge: stop took {took} s (bound {BOUND_S} s), {n} escalations and {n * rows} rows handed on")


def test_an_agent_stopped_under_load_while_inferring_exits_0_in_time_and_keeps_its_outbox(
        broker, topics, mqtt_factory, tmp_path, hog):
    state = tmp_path / "agent"
    model = write_files(release(topics, "digits", 1), tmp_path / "init")
    conf = tmp_path / "agent.toml"
    conf.write_text(f'device = "stop-dev"\ntask = "digits"\nroot = "{topics.root}"\nstate_dir = "{state}"\n'
                    f'[mqtt]\nport = {broker.port}\n[source]\ntype = "replay"\nsplit = "all"\nloop = true\n'
                    f'fps = 100.0\n[telemetry]\ninterval_s = 0.3\n[features]\nbatch_size = 8\nmax_age_s = 0.3\n'
                    f'[decision]\nrate_limit = 1000.0\nburst = 1000\n'
                    f'[model]\nallow_unsigned = true\ninitial_model = "{model["initial_model"]}"\n'
                    f'initial_manifest = "{model["initial_manifest"]}"\n')
    sub = mqtt_factory()
    seen: list = []
    lock = threading.Lock()

    def on(m) -> None:
        kind = topics.parse(m.topic).kind
        with lock:
            seen.append((kind, m.payload))

    sub.subscribe_and_wait(topics.device_tree("stop-dev"), 1, on)

    def delivered(kinds) -> set[bytes]:
        with lock:
            return {p for k, p in seen if k in kinds}

    took = []
    for rnd in range(ROUNDS):
        log = tmp_path / f"agent-{rnd}.log"
        before = len(delivered({Kind.FEAT}))
        proc = spawn([sys.executable, "-m", "edge_agent", "--config", str(conf)], log)
        try:
            assert wait_until(lambda before=before: len(delivered({Kind.FEAT})) > before + 3, 60), log.read_text()[-2000:]
            hog.start()
            time.sleep(1.0 + 0.5 * rnd)
            assert hog.busy()
            stopped = sigterm(proc, log)
        finally:
            hog.stop()
            reap(proc)
        within_bound(stopped, took)
        # No bridge gave custody: every data row the broker delivered is still held on disk.
        data = delivered({Kind.FEAT, Kind.HARD, Kind.EVENT})
        with sqlite3.connect(state / "outbox.sqlite") as db:
            held = {bytes(p) for (p,) in db.execute("SELECT payload FROM outbox")}
        assert data <= held, (len(data - held), len(data), len(held))
    print(f"agent: stop took {took} s (bound {BOUND_S} s)")
