"""Hostile payloads on every topic every service subscribes to, then each service must still answer.

Real processes (broker, worker with staged rollout on, bridge, agent). The families: a 5,000-digit number, nesting 30,000
deep, NaN, an unknown schema version, a truncated and a wrongly typed tensor container, an oversized
payload, a manifest with a bad signature, garbage bytes. Afterwards the agent answers a `rebirth`
command and keeps predicting, the bridge forwards a fresh escalation and reports status, the worker
answers it, and no process has died.
"""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from shared.protocol import codec, schemas
from shared.protocol.containers import FeatureBatch, HardSample
from shared.transport.mqtt import MqttClient, MqttSettings
from tests.e2e.faultstack import FaultStack

pytestmark = [pytest.mark.slow, pytest.mark.broker]

HUGE = b"9" * 5000
DEEP = b"[" * 30000 + b"]" * 30000


def _families() -> list[bytes]:
    ok = FeatureBatch("cam-1", "cam", "digits", 1, 1, 1, np.arange(2, dtype=np.int64), np.zeros((2, 64), np.float32),
                      np.full((2, 10), 0.1, np.float32), np.zeros(2)).encode()
    wrong_dtype = codec.encode({"sample": np.arange(2, dtype=np.float64)}, {"kind": "feat", "schema": "1"})
    return [b'{"schema":1,"kind":"status","boot":' + HUGE + b"}", DEEP, b'{"schema":1,"ts":NaN}',
            b'{"schema":9,"kind":"event"}', ok[:-17], wrong_dtype, b"x" * 300_000, b"\xff\xfe\x00garbage",
            b'{"schema":1,"kind":"manifest","task":"digits","version":99,"signature":"AAAA"}', b""]


def test_every_service_survives_every_family_on_every_topic(tmp_path):
    stack = FaultStack(tmp_path, agents=1, fps=10.0, label_fraction=0.0,
                       agent={"outbox": {"custody_timeout_s": 5.0}},
                       worker={"status_interval_s": 0.5, "rollout": {"enabled": True}})
    try:
        stack.start()
        t = stack.topics
        pub = MqttClient(MqttSettings(port=stack.broker.port), client_id="hostile")
        pub.start()
        assert pub.wait_connected(10)
        # Execute: every family on every subscribed topic of every service
        dev = "cam-1"
        targets = [t.manifest("digits"), t.artifact("digits", 99), t.reply(dev), t.custody(dev),
                   *(t.cmd(dev, n) for n in ("rebirth", "thresholds", "rollback")),
                   t.event(dev, "cam"), t.hard(dev, "cam"), t.feat(dev, "cam"), t.telemetry(dev), t.pred(dev, "cam"),
                   t.model_state(dev), t.status("cam-9"), t.label(dev, "cam"), t.hub_ack("bridge-1"),
                   t.hub_infer("digits"), t.hub_batch("digits"), t.release("digits"), t.model_version("digits", 99),
                   t.rollout_cmd("digits")]
        retained = (t.manifest("digits"), t.artifact("digits", 99), t.release("digits"), t.model_version("digits", 99))
        for payload in _families():
            for topic in targets:
                retain = topic in retained
                if payload or retain:
                    pub.publish(topic, payload, qos=1, retain=retain)
        time.sleep(3.0)
        # Assert: each service still answers
        replies, statuses, hub = [], [], []
        lock = threading.Lock()

        def keep(into):
            def on(m):
                with lock:
                    into.append(m)
            return on

        pub.subscribe_and_wait(t.reply(dev), 1, keep(replies))
        pub.subscribe_and_wait(t.status(dev), 1, keep(statuses))
        pub.subscribe_and_wait(t.hub_status(), 1, keep(hub))
        n_status = len(statuses)
        pub.publish(t.cmd(dev, "rebirth"), schemas.dumps(schemas.Command(name="rebirth", ts=time.time())), qos=1)
        # a fresh escalation from a device the bridge has not seen: through the bridge to the worker and back
        x = np.zeros((1, 1, 8, 8), np.float32)
        hs = HardSample(dev, "cam", "digits", 7, 0, 1, np.array([123], np.int64), x, np.zeros((1, 64), np.float32),
                        np.full((1, 10), 0.1, np.float32), np.array([time.time()]))
        pub.publish(t.hard(dev, "cam"), hs.encode(), qos=1, response_topic=t.reply(dev), correlation_data=b"123")
        feats_before = len(stack.observed.accepted["feat"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                got = (len(statuses) > n_status, any(json.loads(m.payload).get("sample") == 123 for m in replies
                                                     if m.payload), len(hub) > 1,
                       len(stack.observed.accepted["feat"]) > feats_before)
            if all(got):
                break
            time.sleep(0.2)
        # rebirth answered, the worker replied through the bridge, hub status flows, the agent still sends
        assert got == (True, True, True, True), got
        # every family reached its decoder and got a typed rejection with a counter
        def rejected():
            with stack.observed.lock:
                hub_c = dict(stack.observed.hub_status.get("counters", {}))
                work_c = dict(stack.observed.worker_status.get("counters", {}))
                tel = stack.observed.telemetry.get(dev)
                agent_c = dict(tel.counters) if tel else {}
            hub_kinds = {k.split(".")[1] for k in hub_c if k.startswith("rejected.")}
            return (hub_kinds >= {"event", "escalation", "feature", "telemetry", "status", "label", "batch_ack"},
                    any(k.startswith("learn.rejected.") for k in work_c)
                    and {"rollout.cmd.rejected.not_json", "rollout.cmd.rejected.wrong_kind"} <= set(work_c)
                    and {"rejected.telemetry.not_json", "rejected.model_state.not_json"} <= set(work_c),
                    {"rejected.cmd.oversized", "rejected.reply.not_json", "rejected.custody.wrong_kind",
                     "model.rejected.bad_signature", "release.rejected.not_json",
                     "release.rejected.wrong_kind"} <= set(agent_c))
        deadline = time.monotonic() + 20
        while not all(rejected()) and time.monotonic() < deadline:
            time.sleep(0.3)
        assert rejected() == (True, True, True), rejected()
        alive = {n: p.alive() for n, p in stack.procs.items()}
        assert all(alive.values()), {n: stack.procs[n].tail() for n, a in alive.items() if not a}
        pub.stop()
        codes = stack.shutdown()
    except BaseException:
        stack.kill_all()
        raise
    assert all(c == 0 for c in codes.values()), codes
    for name in ("worker", "bridge", "agent-1"):
        log = stack.procs[name].log.read_text(errors="replace")
        assert "Traceback" not in log, f"{name} logged a traceback:\n{log[-3000:]}"
