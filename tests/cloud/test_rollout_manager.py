"""The rollout state machine (cloud_worker/rollout/manager.py) and its field counts (field.py), without a broker.

A real registry on disk, the real judge and signing; the broker and the learner are stand-ins that
record what the manager asked of them (Ports).
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_worker.config import RolloutSettings
from cloud_worker.registry import Registry
from cloud_worker.rollout.field import FieldCounts
from cloud_worker.rollout.manager import Ports, RolloutManager
from shared.model import groups
from shared.protocol import schemas
from shared.protocol.containers import FusedBatch
from shared.protocol.schemas import ModelState, Release, RolloutCommand, RolloutEvent, Status, Telemetry
from shared.protocol.topics import Topics
from shared.security.signing import verify_obj

TASK = "digits"
DEVICES = [f"cam-{i}" for i in range(1, 6)]
KEY = Ed25519PrivateKey.generate()


class Clock:
    def __init__(self) -> None:
        self.t = 1_800_000_000.0

    def __call__(self) -> float:
        return self.t


class Broker:
    """What the manager published, decoded, in order."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.calls: list[tuple] = []
        self.fail = False

    def ports(self) -> Ports:
        def restore(version: int):
            if self.fail:
                raise RuntimeError("worker killed mid-restore")
            n = register(self.registry, max(self.registry.versions(TASK)) + 1, kind="rollback", source=version)
            self.calls.append(("fleet", n.version))
            return n

        return Ports(publish_fleet=lambda e: self.calls.append(("fleet", e.version)),
                     publish_version=lambda e: self.calls.append(("version", e.version)),
                     clear_version=lambda t, v, a: self.calls.append(("clear", v, a)),
                     send=lambda topic, payload, retain: self.calls.append(("send", str(topic), payload, retain)),
                     restore=restore)

    def events(self) -> list[RolloutEvent]:
        return [schemas.loads(c[2], RolloutEvent) for c in self.calls if c[0] == "send" and c[1].endswith("/event")]

    def releases(self) -> list[dict]:
        return [json.loads(c[2]) for c in self.calls if c[0] == "send" and c[1].endswith("/release")]


def register(reg: Registry, version: int, *, kind: str = "head", source: int | None = None, forced: bool = False):
    reg.claim(TASK)
    rec = {"task": TASK, "version": version, "kind": kind, "source_version": source, "metrics": {"accuracy": 0.9},
           "decision": {"forced": True} if forced else {}, "manifest_raw": "{}"}
    return reg.write(TASK, version, b"onnx", rec, None)


@pytest.fixture
def env(tmp_path):
    reg = Registry(tmp_path / "registry")
    for v in (1, 2):
        register(reg, v)
    clock = Clock()
    broker = Broker(reg)

    def manager(**over) -> RolloutManager:
        settings = RolloutSettings(enabled=True, stages=over.pop("stages", ["20%", "100%"]), min_stage_s=5,
                                   min_labels=40, min_samples=80, margin=0.05, max_stage_s=120, tick_s=0.0, **over)
        fc = FieldCounts(TASK)
        for d in DEVICES:
            fc.status(Status(device=d, state="online", boot=1, models={TASK: 2}, ts=clock.t))
        m = RolloutManager(TASK, settings, reg, Topics(), KEY, fc, broker.ports(), clock=clock)
        m.load(fleet_default=2)
        return m

    return reg, clock, broker, manager


def rows(fc: FieldCounts, version: int, n: int, correct: int, *, device: str = "cam-1", start: int = 0) -> None:
    label = np.zeros(n, np.int64)
    edge = np.where(np.arange(n) < correct, 0, 1)
    fc.fused(FusedBatch(TASK, "b1", 1, start, (device,), (), np.arange(start, start + n, dtype=np.int64),
                        np.zeros(n, np.int32), np.zeros((n, 4), np.float32), label, edge.astype(np.int64),
                        np.full(n, 0.9, np.float32), np.full(n, version, np.int32), np.zeros((n, 0), np.float32)))


def test_a_candidate_starts_on_the_share_of_the_known_fleet_and_the_rest_keeps_control(env):
    reg, clock, broker, manager = env
    m = manager()
    # Execute
    m.start(register(reg, 3))
    # Assert: one of the five devices (20 %) is in stage 0, the others run v2
    rel = Release.model_validate(broker.releases()[-1])
    assert rel.state == "running" and rel.candidate == 3 and rel.control == 2 and rel.stage == 0
    on_candidate = [d for d in DEVICES if groups.target_version(rel, d, ()) == 3]
    assert len(on_candidate) == 1
    assert ("version", 3) in broker.calls and ("version", 2) in broker.calls and ("fleet", 3) not in broker.calls
    ev = broker.events()[-1]
    assert ev.action == "start" and ev.from_version == 2 and ev.to_version == 3 and on_candidate[0] in ev.group
    verify_obj(broker.releases()[-1], KEY.public_key())  # signed
    assert m.active and m.protected() >= {2, 3}


def test_a_worse_candidate_is_rolled_back_with_the_figures_and_never_reaches_the_fleet(env):
    reg, clock, broker, manager = env
    m = manager()
    m.start(register(reg, 3, forced=True))
    rows(m.field, 3, 100, 10, device="cam-4")
    rows(m.field, 2, 200, 190, device="cam-1", start=1000)
    clock.t += 6
    # Execute
    m.tick()
    # Assert
    rel = Release.model_validate(broker.releases()[-1])
    assert rel.state == "rolled_back" and rel.restored == 4 and m.fleet == 4
    assert reg.get(TASK, 4).record["kind"] == "rollback" and reg.get(TASK, 4).record["source_version"] == 2
    ev = broker.events()[-1]
    assert ev.action == "rollback" and (ev.from_version, ev.to_version) == (3, 4) and ev.forced
    assert ev.figures.candidate.accuracy == pytest.approx(0.1) and ev.figures.control.accuracy == pytest.approx(0.95)
    assert ev.figures.candidate.labelled == 100 and ev.figures.upper < -0.05
    assert "worse than control" in ev.reason and "v4 carries v2's weights" in ev.reason
    assert ("fleet", 3) not in broker.calls and ("clear", 3, True) in broker.calls
    assert not m.active and all(groups.target_version(rel, d, ()) == 4 for d in DEVICES)
    # recorded with the figures in the registry
    line = (reg.task_dir(TASK) / "rollout-events.jsonl").read_text().splitlines()[-1]
    assert json.loads(line)["figures"]["candidate"]["accuracy"] == pytest.approx(0.1)


def test_too_few_samples_waits_and_a_good_candidate_goes_through_every_stage(env):
    reg, clock, broker, manager = env
    m = manager(stages=["20%", "60%", "100%"])
    m.start(register(reg, 3))
    rows(m.field, 3, 30, 30, device="cam-4")
    rows(m.field, 2, 300, 280, start=1000)
    clock.t += 10
    m.tick()
    assert m.rel.stage == 0 and m.last.action == "wait" and "too few" in m.last.reason
    rows(m.field, 3, 200, 195, device="cam-4", start=30)
    m.tick()
    assert m.rel.stage == 1 and m.rel.state == "running"
    assert broker.events()[-1].action == "advance"
    assert m.field.arm(3).samples == 0  # a new stage gathers its own evidence
    assert len([d for d in DEVICES if groups.target_version(m.rel, d, ()) == 3]) == 3  # 60 % of 5
    clock.t += 10
    rows(m.field, 3, 300, 290, device="cam-2", start=5000)
    rows(m.field, 2, 300, 280, device="cam-5", start=9000)
    m.tick()
    assert m.rel.state == "promoted" and m.fleet == 3 and ("fleet", 3) in broker.calls
    assert broker.events()[-1].action == "promote" and all(groups.target_version(m.rel, d, ()) == 3 for d in DEVICES)


def test_a_restarted_worker_resumes_the_same_stage_with_its_evidence(env):
    reg, clock, broker, manager = env
    m = manager(stages=["20%", "60%", "100%"])
    m.start(register(reg, 3))
    rows(m.field, 3, 30, 30, device="cam-4")
    m.tick()
    m.save()
    seq = m.rel.seq
    # Execute: a new process on the same registry
    again = manager(stages=["20%", "60%", "100%"])
    # Assert
    assert again.active and again.rel.stage == 0 and again.rel.seq == seq and again.fleet == 2
    assert again.field.arm(3).labelled == 30 and again.need_republish
    again.republish()
    assert Release.model_validate(broker.releases()[-1]).seq == seq


def test_a_rollback_interrupted_by_a_crash_is_finished_after_the_restart(env):
    reg, clock, broker, manager = env
    m = manager()
    m.start(register(reg, 3))
    rows(m.field, 3, 100, 10, device="cam-4")
    rows(m.field, 2, 200, 190, start=1000)
    clock.t += 6
    broker.fail = True
    m.tick()  # the restore "dies": nothing published, the intent is on disk
    assert m.pending is not None and m.active
    register(reg, 4, kind="rollback", source=2)  # ... but the restoring version was registered before the kill
    broker.fail = False
    # Execute
    again = manager()
    # Assert: finished with v4, no second restore
    assert again.rel.state == "rolled_back" and again.rel.restored == 4 and again.pending is None
    assert reg.versions(TASK) == [1, 2, 3, 4]


def cmd(action: str) -> RolloutCommand:
    return RolloutCommand(task=TASK, id=f"c-{action}", action=action, ts=0.0)


def test_operator_commands_pause_resume_promote_pin_and_refuse(env):
    reg, clock, broker, manager = env
    m = manager()
    m.command(cmd("pause"))
    assert broker.events()[-1].action == "refused" and broker.events()[-1].command == "c-pause"
    m.start(register(reg, 3))
    m.command(RolloutCommand(task=TASK, id="c-pause2", action="pause", ts=0.0))
    m.command(RolloutCommand(task=TASK, id="c-pause2", action="pause", ts=0.0))  # the same id again: done once
    assert m.rel.state == "paused" and [e.action for e in broker.events()].count("pause") == 1
    rows(m.field, 3, 100, 10, device="cam-4")
    rows(m.field, 2, 200, 190, start=1000)
    clock.t += 6
    m.tick()
    assert m.active and m.last.action == "rollback"  # paused: judged, not acted on
    m.command(RolloutCommand(task=TASK, id="c-resume", action="resume", ts=0.0))
    m.command(RolloutCommand(task=TASK, id="c-pin", action="pin", group="site:garage", version=1, ts=0.0))
    assert m.rel.pins[0].version == 1 and ("version", 1) in broker.calls
    assert groups.target_version(m.rel, "cam-1", ["site:garage"]) == 1
    m.command(RolloutCommand(task=TASK, id="c-promote", action="promote", ts=0.0))
    assert m.rel.state == "promoted" and broker.events()[-1].command == "c-promote"
    m.command(RolloutCommand(task=TASK, id="c-pin9", action="pin", group="site:x", version=9, ts=0.0))
    assert broker.events()[-1].action == "refused" and "not in the registry" in broker.events()[-1].reason
    m.command(RolloutCommand(task=TASK, id="c-unpin", action="unpin", group="site:garage", ts=0.0))
    assert m.rel.pins == [] and broker.events()[-1].action == "unpin"


def test_abort_rolls_back_at_once(env):
    reg, clock, broker, manager = env
    m = manager()
    m.start(register(reg, 3))
    m.command(RolloutCommand(task=TASK, id="c-abort", action="abort", ts=0.0))
    assert m.rel.state == "aborted" and m.rel.restored == 4 and broker.events()[-1].action == "abort"


def test_a_version_an_operator_sends_to_the_fleet_supersedes_the_release(env):
    reg, clock, broker, manager = env
    m = manager()
    m.start(register(reg, 3))
    m.on_fleet(register(reg, 4, kind="rollback", source=1))
    assert m.rel.state == "aborted" and m.rel.restored == 4 and m.fleet == 4
    assert "superseded" in broker.events()[-1].reason


def test_only_new_retrained_versions_become_releases_and_the_demo_makes_the_nth_bad(env):
    reg, clock, broker, manager = env
    m = manager(inject_bad_release=2)
    assert not m.wants(register(reg, 3, kind="rollback", source=1))
    assert m.wants(register(reg, 4)) and not m.next_is_bad()
    m.start(reg.get(TASK, 4))
    assert not m.wants(register(reg, 5))  # one release at a time
    m.command(RolloutCommand(task=TASK, id="c-abort", action="abort", ts=0.0))
    assert m.next_is_bad()


def test_field_counts_each_row_once_and_attribute_telemetry_to_the_serving_version():
    fc = FieldCounts(TASK)
    rows(fc, 3, 10, 7)
    rows(fc, 3, 10, 7)  # a redelivered batch
    unlabelled = FusedBatch(TASK, "b", 1, 9, ("cam-1",), (), np.arange(100, 104, dtype=np.int64),
                            np.zeros(4, np.int32), np.zeros((4, 4), np.float32), np.full(4, -1, np.int64),
                            np.zeros(4, np.int64), np.ones(4, np.float32), np.full(4, 3, np.int32),
                            np.zeros((4, 0), np.float32))
    fc.fused(unlabelled)
    fc.fused(dataclasses.replace(unlabelled, label=np.array([0, 1, -1, -1], np.int64)))  # labels came later
    fc.escalations(np.array([3, 3, 2]), np.array([1, 2, 3]), np.array([1, 0, 3]))
    base = dict(device="cam-1", boot=1, fps=10.0, latency_ms_p99=1.0, uplink_bytes=0, raw_bytes=0, outbox_depth=0,
                escalation_ratio=0.0, dropped_frames=0)
    fc.telemetry(Telemetry(ts=1.0, latency_ms_p50=0.5, frames=100, counters={}, models={TASK: 3}, **base))
    fc.telemetry(Telemetry(ts=2.0, latency_ms_p50=0.7, frames=150, counters={"frames.inference_error": 2},
                           models={TASK: 3}, **base))
    fc.model_state(ModelState(device="cam-2", task=TASK, state="rejected", version=2, offered=3, ts=0.0))
    a = fc.arm(3)
    assert (a.samples, a.labelled, a.correct) == (14, 12, 8)
    assert (a.escalations, a.agree) == (2, 1) and fc.arm(2).agree == 1
    assert (a.frames, a.errors, a.latency_ms_p50, a.swap_failures) == (50, 2, 0.7, 1)
