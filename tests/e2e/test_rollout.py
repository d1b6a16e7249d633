"""Staged rollout end to end: real broker, worker, bridge, five agents and a labeller (the fast digits task).

1. A deliberately worse candidate (trained on wrong labels, released although the holdout gate
   refuses it) goes to 20 % of the fleet, is rolled back by field evidence before any other device
   runs it, and the event names the figures; the next, better candidate is promoted to everyone.
2. Worker kill -9 and broker SIGKILL in the middle of a stage: the rollout resumes in the same stage,
   and no device ends on a version its group should not run.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Any

import pytest

from shared.model import groups
from shared.protocol import schemas
from shared.protocol.schemas import ModelState, Release, RolloutEvent
from shared.protocol.topics import Kind
from shared.transport.mqtt import Message, MqttClient, MqttSettings
from tests.e2e.faultstack import FaultStack

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DEVICES = [f"cam-{i}" for i in range(1, 6)]
PLAN = {"enabled": True, "stages": ["20%", "100%"], "min_labels": 40, "min_samples": 80, "margin": 0.05,
        "max_stage_s": 120}


class Watch:
    """Rollout events, the retained release and every device's model states, as they come."""

    def __init__(self, stack: FaultStack) -> None:
        self.lock = threading.Lock()
        self.events: list[RolloutEvent] = []
        self.releases: list[Release] = []
        self.states: list[ModelState] = []
        self.fleet: list[int] = []  # versions seen on the fleet's manifest topic
        t = stack.topics
        self.client = MqttClient(MqttSettings(port=stack.broker.port, backoff_min=0.05, backoff_max=0.5),
                                 client_id="rollout-watch")
        self.client.subscribe(t.rollout_events(), 1, lambda m: self._on(m, RolloutEvent, self.events))
        self.client.subscribe(t.releases(), 1, lambda m: self._on(m, Release, self.releases))
        self.client.subscribe(t.edge_kind(Kind.MODEL_STATE), 1, lambda m: self._on(m, ModelState, self.states))
        self.client.subscribe(t.manifests(), 1, self._on_manifest)
        self.client.start()
        assert self.client.wait_connected(10)

    def _on(self, m: Message, cls: type, into: list) -> None:
        if m.payload:
            with self.lock:
                into.append(schemas.loads(m.payload, cls))

    def _on_manifest(self, m: Message) -> None:
        if m.payload:
            with self.lock:
                self.fleet.append(int(json.loads(m.payload)["version"]))

    def event(self, pred) -> RolloutEvent | None:
        with self.lock:
            return next((e for e in self.events if pred(e)), None)

    def wait(self, pred, stack: FaultStack, timeout: float, what: str) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            dead = [p for p in stack.procs.values() if p.popen is not None and p.popen.poll() not in (None, 0)
                    and p.name != "worker"]
            assert not dead, f"{dead[0].name} died:\n{dead[0].tail()}"
            time.sleep(0.2)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; events: "
                             f"{[(e.action, e.release, e.reason[:80]) for e in self.events]}")


def serving(stack: FaultStack) -> dict[str, int]:
    with stack.observed.lock:
        return {d: t.models.get("digits", 0) for d, t in stack.observed.telemetry.items()}


def targets(rel: Release) -> dict[str, int]:
    return {d: groups.target_version(rel, d, ()) for d in DEVICES}


def test_a_worse_candidate_is_rolled_back_before_the_rest_and_a_better_one_is_promoted(tmp_path):
    stack = FaultStack(tmp_path, agents=5, fps=10.0, label_fraction=0.5, agent={"telemetry": {"interval_s": 1.0}},
                       worker={"triggers": {"min_new_labels": 100, "cooldown_s": 2.0},
                               "rollout": {**PLAN, "min_stage_s": 8, "inject_bad_release": 1}})
    watch: Watch | None = None
    try:
        stack.start()
        watch = Watch(stack)
        # Execute: the first release is the bad one; wait for its fate and for a good one's promotion
        rolled = watch.wait(lambda: watch.event(lambda e: e.action == "rollback"), stack, 90, "a rollback")
        promoted = watch.wait(lambda: watch.event(lambda e: e.action == "promote"), stack, 90, "a promotion")
        final = promoted.to_version
        watch.wait(lambda: all(v >= final for v in serving(stack).values()) and len(serving(stack)) == 5, stack, 30,
                   "every device on the promoted version")
        watch.client.stop()
        codes = stack.shutdown()
    except BaseException:
        if watch is not None:
            watch.client.stop()
        stack.kill_all()
        raise
    # Assert: the bad release went to one device of five (20 %) and to no other, then back
    start = watch.event(lambda e: e.action == "start" and e.release == rolled.release)
    assert start is not None and start.forced and "FORCED" in start.reason
    bad = start.to_version
    first = next(r for r in watch.releases if r.release == rolled.release)
    canaries = {d for d, v in targets(first).items() if v == bad}
    assert len(canaries) == 1, targets(first)
    loaded_bad = {s.device for s in watch.states if s.state == "loaded" and s.version == bad}
    assert loaded_bad == canaries, loaded_bad
    assert bad not in watch.fleet and rolled.to_version in watch.fleet, watch.fleet  # never offered to the fleet
    assert rolled.group == start.group and rolled.group.count("cam-") == 1
    # ... rolled back by field evidence, with the figures in the event
    f = rolled.figures
    assert rolled.from_version == bad and rolled.forced and f is not None
    assert f.metric == "accuracy" and f.candidate.version == bad and f.control.version == start.from_version
    assert f.candidate.labelled >= 40 and f.control.labelled >= 40 and f.upper < -f.margin
    assert f.candidate.accuracy < f.control.accuracy - 0.3, f
    assert "worse than control" in rolled.reason and "accuracy" in rolled.reason
    # ... and a better candidate reached everyone through its stages
    good_start = watch.event(lambda e: e.action == "start" and e.release == promoted.release)
    assert good_start is not None and not good_start.forced and promoted.figures.lower > -promoted.figures.margin
    # Nothing was lost on the way: no frame dropped, no model refused, every process exited 0
    with stack.observed.lock:
        tele = dict(stack.observed.telemetry)
    assert all(t.dropped_frames == 0 and t.counters.get("frames.inference_error", 0) == 0 for t in tele.values())
    assert not [s for s in watch.states if s.state == "rejected"]
    for dev in DEVICES:  # each swap is to another version: a promotion does not reload what a canary runs
        seq = [s.version for s in watch.states if s.device == dev and s.state == "loaded"]
        assert all(a != b for a, b in zip(seq, seq[1:], strict=False)), (dev, seq)
    assert all(c == 0 for c in codes.values()), codes


def test_a_rollout_resumes_in_the_same_stage_after_worker_kill9_and_broker_sigkill(tmp_path):
    stack = FaultStack(tmp_path, agents=5, fps=10.0, label_fraction=0.5, agent={"telemetry": {"interval_s": 1.0}},
                       worker={"triggers": {"min_new_labels": 100, "cooldown_s": 2.0},
                               "rollout": {**PLAN, "min_stage_s": 30}})
    watch: Watch | None = None
    try:
        stack.start()
        watch = Watch(stack)
        start = watch.wait(lambda: watch.event(lambda e: e.action == "start"), stack, 60, "a release")
        rel0 = watch.wait(lambda: next((r for r in watch.releases if r.release == start.release), None), stack, 10,
                          "its release")
        want = targets(rel0)
        watch.wait(lambda: serving(stack) == want, stack, 20, "canary on the candidate, the rest on control")
        # Execute: kill -9 the worker mid-stage, restart it; then SIGKILL the broker and restart it
        stack.procs["worker"].signal(signal.SIGKILL)
        stack.resume("worker")
        time.sleep(3.0)
        stack.kill_broker()
        stack.restart_broker()
        n = len(watch.releases)
        resumed = watch.wait(lambda: len(watch.releases) > n and watch.releases[-1], stack, 30,
                             "the release again after the restarts")
        mid = serving(stack)
        promoted = watch.wait(lambda: watch.event(lambda e: e.action == "promote" and e.release == start.release),
                              stack, 60, "the promotion after the restarts")
        final = watch.wait(lambda: next((r for r in reversed(watch.releases) if r.state == "promoted"
                                         and r.release == start.release), None), stack, 10, "the promoted release")
        watch.wait(lambda: serving(stack) == targets(final), stack, 30, "every device on its version")
        watch.client.stop()
        codes = stack.shutdown()
    except BaseException:
        if watch is not None:
            watch.client.stop()
        stack.kill_all()
        raise
    # Assert: the same release, the same stage, the same assignment after both crashes
    assert (resumed.release, resumed.state, resumed.stage, resumed.candidate, resumed.control) == \
        (rel0.release, "running", 0, rel0.candidate, rel0.control)
    assert resumed.seq >= rel0.seq and targets(resumed) == want
    assert mid == want, (mid, want)
    # only one release was started and judged; it passed its stage once, after the restarts
    assert [e.action for e in watch.events if e.release == start.release].count("start") == 1
    assert promoted.figures is not None and promoted.figures.elapsed_s >= 30
    assert {d: v for d, v in targets(final).items()} == dict.fromkeys(DEVICES, rel0.candidate)
    assert all(c in (0, None) for n, c in codes.items() if n != "worker") and codes["worker"] == 0, codes
