"""Staged rollout of one task: a release per new version, its stages, the judge's decisions, operator commands.

A new candidate becomes a **release**: its manifest goes on its own topic (``model/{task}/version/{N}``),
not the fleet's; the signed, retained ``Release`` on ``model/{task}/release`` says which devices run it
(stage 0's groups or share of the hash ring) while the rest keep the control version, whose manifest
stays on ``model/{task}/manifest``. Every tick the field judge (:mod:`.judge`) compares what the two
arms did in the stage (:mod:`.field`): promote moves to the next stage and at the end publishes the
candidate to the fleet; rollback registers a new version carrying control's weights (agents only move
forward; the learner adopts it), publishes it to the fleet and withdraws the candidate, which no device
outside the canaries was ever offered. Every change is a signed ``RolloutEvent`` on
``rollout/{task}/event`` (also appended to ``registry/{task}/rollout-events.jsonl``).

State persists in ``registry/{task}/rollout.json`` before anything is published, so a worker killed at
any point resumes the same stage with the evidence it had and republishes what the broker may have
lost. Runs on the worker's learner thread: a rollback calls the learner, which has no locks.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from cloud_worker.config import RolloutSettings
from cloud_worker.registry import Entry, Registry, RegistryError
from cloud_worker.rollout.commands import OperatorCommands
from cloud_worker.rollout.field import FieldCounts
from cloud_worker.rollout.judge import Verdict, judge
from cloud_worker.rollout.plan import everyone, plan_from
from shared.model import groups
from shared.process.counters import Counters
from shared.protocol.schemas import Figures, Release, RolloutEvent, Stage
from shared.protocol.topics import Topic, Topics
from shared.security.signing import sign_msg

log = logging.getLogger(__name__)

ACTIVE = ("running", "paused")
MAX_CMD_IDS = 200
SAVE_EVERY_S = 5.0


@dataclass
class Ports:
    """What the manager drives on the broker and in the learner (the service wires them)."""

    publish_fleet: Callable[[Entry], None]  # artifact + model/{task}/manifest
    publish_version: Callable[[Entry], None]  # artifact + model/{task}/version/{N}
    clear_version: Callable[[str, int, bool], None]  # (task, version, also the artifact)
    send: Callable[[Topic, bytes, bool], None]  # (topic, payload, retain)
    restore: Callable[[int], Entry]  # a new version with this version's weights, adopted and sent to the fleet


class RolloutManager(OperatorCommands):
    def __init__(self, task: str, settings: RolloutSettings, registry: Registry, topics: Topics,
                 private: Ed25519PrivateKey, field: FieldCounts, ports: Ports, *, counters: Counters | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.task = task
        self.settings = settings
        self.registry = registry
        self.topics = topics
        self.private = private
        self.field = field
        self.ports = ports
        self.counters = counters or Counters()
        self.clock = clock
        self.path = registry.task_dir(task) / "rollout.json"
        self.rel: Release | None = None  # unsigned; signed on the way out
        self.fleet = 0  # the version on model/{task}/manifest
        self.releases = 0
        self.stage_started = 0.0
        self.versioned: set[int] = set()  # versions with a retained model/{task}/version/{N}
        self.pending: dict[str, Any] | None = None  # a rollback begun and not finished
        self.cmd_ids: deque[str] = deque(maxlen=MAX_CMD_IDS)
        self.last: Verdict | None = None
        self.need_republish = False
        self._last_tick = 0.0
        self._last_save = 0.0

    # ---- state --------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.rel is not None and self.rel.state in ACTIVE

    def load(self, fleet_default: int) -> None:
        """Resume from rollout.json; without one, the fleet runs ``fleet_default`` (the newest version)."""
        self.fleet = fleet_default
        if not self.path.exists():
            return
        try:
            st = json.loads(self.path.read_text())
            self.rel = Release.model_validate(st["release"]) if st.get("release") else None
            self.fleet = int(st.get("fleet") or fleet_default)
            self.releases = int(st.get("releases", 0))
            self.stage_started = float(st.get("stage_started", 0.0))
            self.versioned = set(st.get("versioned", ()))
            self.pending = st.get("pending")
            self.cmd_ids.extend(st.get("cmd_ids", ()))
            self.field.restore(st.get("counts", {}))
        except (OSError, ValueError, KeyError, TypeError) as exc:  # unreadable: start afresh, loudly
            log.error("%s: ignoring unreadable rollout state %s: %s", self.task, self.path, exc)
            self.counters.inc("rollout.state_unreadable")
            return
        if self.pending is not None:
            self._adopt_finished_restore()
        self.need_republish = True
        log.info("%s: rollout resumed: %s", self.task, self.describe())

    def save(self) -> None:
        st = {"release": self.rel.model_dump(by_alias=True) if self.rel else None, "fleet": self.fleet,
              "releases": self.releases, "stage_started": self.stage_started, "versioned": sorted(self.versioned),
              "pending": self.pending, "cmd_ids": list(self.cmd_ids), "counts": self.field.dump()}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as f:
            json.dump(st, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        self._last_save = self.clock()

    def describe(self) -> str:
        r = self.rel
        if r is None:
            return "no release"
        return (f"{r.release} {r.state}, stage {r.stage + 1}/{len(r.plan.stages)}, v{r.candidate} vs v{r.control}"
                + (f", restored v{r.restored}" if r.restored else ""))

    def protected(self) -> set[int]:
        """Versions whose artifacts must stay on the broker."""
        out = {self.fleet} | self.versioned
        if self.rel is not None:
            out |= {p.version for p in self.rel.pins}
            if self.active:
                out |= {self.rel.candidate, self.rel.control}
        return out

    def wants(self, entry: Entry) -> bool:
        """Should this newly registered version go out as a release rather than to the fleet?"""
        return (self.settings.enabled and entry.record.get("kind") not in ("bootstrap", "promote", "rollback")
                and self.fleet > 0 and entry.version > self.fleet and not self.active)

    def next_is_bad(self) -> bool:
        """The demo's --inject-bad-release: is the next release the one to train on wrong labels?"""
        n = self.settings.inject_bad_release
        return self.settings.enabled and n > 0 and self.releases == n - 1

    # ---- what the worker reports ----------------------------------------------------------
    def gauges(self) -> dict[str, float]:
        p = f"{self.task}.rollout."
        r = self.rel
        g = {p + "active": float(self.active), p + "fleet": float(self.fleet), p + "releases": float(self.releases)}
        if r is not None:
            g.update({p + "stage": float(r.stage), p + "candidate": float(r.candidate), p + "control": float(r.control)})
        if self.active and self.last is not None:
            f = self.last.figures
            for name, arm in (("candidate", f.candidate), ("control", f.control)):
                g[p + f"{name}_labelled"] = float(arm.labelled)
                g[p + f"{name}_samples"] = float(arm.samples)
                if arm.accuracy is not None:
                    g[p + f"{name}_accuracy"] = arm.accuracy
            if f.lower is not None:
                g[p + "lower"] = f.lower
        return g

    # ---- starting a release ------------------------------------------------------------------
    def start(self, entry: Entry) -> None:
        now = self.clock()
        plan = plan_from(self.settings)
        first = self._resolve(plan.stages[0], keep_control=True)
        plan = plan.model_copy(update={"stages": [first, *plan.stages[1:]]})
        decision = entry.record.get("decision") or {}
        forced = bool(decision.get("forced"))
        why = (f"new version v{entry.version} (holdout {entry.record['metrics'].get('accuracy', 0):.3f}) against "
               f"v{self.fleet}" + ("; FORCED: the holdout gate refused it (demo: --inject-bad-release)" if forced
                                   else ""))
        self.rel = Release(task=self.task, release=f"{self.task}-v{entry.version}", seq=self._seq(), state="running",
                           candidate=entry.version, control=self.fleet, stage=0, plan=plan,
                           pins=list(self.rel.pins) if self.rel else [], forced=forced, reason=why, started=now,
                           updated=now)
        self.releases += 1
        self.field.reset()
        self.stage_started = now
        self.last = None
        self.versioned |= {entry.version, self.fleet}
        self.save()
        self._publish_versions([entry.version, self.fleet])
        self._announce("start", self.fleet, entry.version, self._group(0), 0, 0, why, None, "")
        log.info("%s: release %s started: %s", self.task, self.rel.release, why)

    def _resolve(self, stage: Stage, *, keep_control: bool) -> Stage:
        if stage.share is None:
            return stage
        rings, _ = self.field.rings()
        return stage.model_copy(update={"ring_below": groups.resolve_share(stage.share, rings,
                                                                           keep_control=keep_control)})

    def _seq(self) -> int:
        # Milliseconds, at least one more than before: strictly increasing even with a lost state file.
        return max((self.rel.seq + 1) if self.rel else 1, int(self.clock() * 1000))

    # ---- the judge ---------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock()
        if now - self._last_tick < self.settings.tick_s:
            return
        self._last_tick = now
        if self.pending is not None:
            self._rollback(**self.pending)
            return
        if not self.active:
            return
        r = self.rel
        assert r is not None
        self.last = judge(r.plan, self.field.arm(r.candidate), self.field.arm(r.control), now - self.stage_started)
        if r.state == "running" and self.last.action == "promote":
            self._advance(self.last.reason, self.last.figures, "")
        elif r.state == "running" and self.last.action == "rollback":
            self._rollback("rolled_back", self.last.reason, self.last.figures.model_dump(), "")
        elif now - self._last_save >= SAVE_EVERY_S:
            self.save()  # the evidence so far survives a crash

    def _advance(self, reason: str, figures: Figures | None, command: str) -> None:
        r = self.rel
        assert r is not None
        stages, k = r.plan.stages, r.stage
        nxt = k + 1
        now = self.clock()
        if nxt >= len(stages) or everyone(stages[nxt]):
            self.rel = r.model_copy(update={"state": "promoted", "stage": len(stages) - 1, "seq": self._seq(),
                                            "reason": f"promoted: {reason}", "figures": figures, "updated": now})
            self.fleet = r.candidate
            self.save()
            entry = self._entry(r.candidate)
            if entry is not None:
                self._try(self.ports.publish_fleet, entry)
            self._withdraw({r.control})
            self._announce("promote", r.control, r.candidate, "everyone", k, len(stages) - 1, reason, figures, command)
            log.info("%s: %s promoted to the fleet: %s", self.task, r.release, reason)
            return
        stage = self._resolve(stages[nxt], keep_control=True)
        plan = r.plan.model_copy(update={"stages": [*stages[:nxt], stage, *stages[nxt + 1:]]})
        self.rel = r.model_copy(update={"stage": nxt, "plan": plan, "seq": self._seq(), "figures": figures,
                                        "reason": f"stage {k + 1} passed: {reason}", "updated": now})
        self.field.reset()
        self.stage_started = now
        self.last = None
        self.save()
        self._announce("advance", r.control, r.candidate, self._group(nxt), k, nxt, reason, figures, command)
        log.info("%s: %s advanced to stage %d: %s", self.task, r.release, nxt + 1, reason)

    def _rollback(self, state: str, reason: str, figures: dict | None, command: str) -> None:
        """Everyone back to control's weights: a new version carrying them, adopted by the learner and
        published to the fleet; the candidate withdrawn. Begun durably, so a crash midway finishes it."""
        r = self.rel
        assert r is not None
        self.pending = {"state": state, "reason": reason, "figures": figures, "command": command}
        self.save()
        try:
            restored = self.ports.restore(r.control)
        except Exception:  # noqa: BLE001 - a failed restore is retried on the next tick, not lost
            self.counters.inc("rollout.restore_failed")
            log.exception("%s: restoring v%d's weights failed; will retry", self.task, r.control)
            return
        self._finish_rollback(restored)

    def _finish_rollback(self, restored: Entry) -> None:
        r, p = self.rel, self.pending
        assert r is not None and p is not None
        figs = Figures.model_validate(p["figures"]) if p.get("figures") else None
        group = self._group(r.stage)
        self.rel = r.model_copy(update={"state": p["state"], "restored": restored.version, "seq": self._seq(),
                                        "reason": f"{p['state'].replace('_', ' ')}: {p['reason']}",
                                        "figures": figs, "updated": self.clock()})
        self.fleet = restored.version
        self.pending = None
        self.save()
        self._try(self.ports.publish_version, restored)
        self.versioned.add(restored.version)
        self._withdraw({r.candidate, r.control})
        action = "abort" if p["state"] == "aborted" else "rollback"
        self._announce(action, r.candidate, restored.version, group, r.stage, r.stage,
                       f"{p['reason']}; v{restored.version} carries v{r.control}'s weights", figs, p.get("command", ""))
        log.warning("%s: %s %s: %s", self.task, r.release, action, p["reason"])

    def _adopt_finished_restore(self) -> None:
        """After a crash during a rollback: if the restoring version was registered, finish with it."""
        r = self.rel
        if r is None:
            self.pending = None
            return
        for v in reversed(self.registry.versions(self.task)):
            if v <= r.candidate:
                break
            rec = self.registry.get(self.task, v).record
            if rec.get("kind") == "rollback" and rec.get("source_version") == r.control:
                self._finish_rollback(self.registry.get(self.task, v))
                return

    def on_fleet(self, entry: Entry) -> None:
        """A version went to the fleet outside this manager (bootstrap, or an operator's `models promote`)."""
        self.fleet = entry.version
        if self.active and self.pending is None and self.rel is not None and entry.version > self.rel.candidate:
            r = self.rel
            why = f"superseded by v{entry.version} ({entry.record.get('kind')}), published to the fleet"
            self.rel = r.model_copy(update={"state": "aborted", "restored": entry.version, "seq": self._seq(),
                                            "reason": why, "updated": self.clock()})
            self.save()
            self._withdraw({r.candidate, r.control})
            self._announce("abort", r.candidate, entry.version, self._group(r.stage), r.stage, r.stage, why,
                           None, "")
        elif self.rel is not None:
            self.save()

    # ---- the broker --------------------------------------------------------------------------
    def republish(self) -> None:
        """Everything the agents need after a broker restart: versions a release assigns, then the release."""
        self.need_republish = False
        if self.rel is None:
            return
        self._publish_versions(sorted(self.versioned | {p.version for p in self.rel.pins}))
        self._publish_release()

    def _publish_versions(self, versions: list[int]) -> None:
        for v in versions:
            entry = self._entry(v)
            if entry is not None:
                self._try(self.ports.publish_version, entry)

    def _withdraw(self, versions: set[int]) -> None:
        """Withdraw the version topics nobody needs now (the candidate's artifact too after a rollback)."""
        keep = {self.fleet} | ({p.version for p in self.rel.pins} if self.rel else set())
        for v in sorted(versions & self.versioned - keep):
            self.versioned.discard(v)
            failed = self.rel is not None and self.rel.state in ("rolled_back", "aborted") and v == self.rel.candidate
            self._try(self.ports.clear_version, self.task, v, failed)
        self.save()

    def _publish_release(self) -> None:
        if self.rel is not None:
            self._try(self.ports.send, self.topics.release(self.task), sign_msg(self.rel, self.private), True)

    def _announce(self, action: str, from_v: int, to_v: int, group: str, stage_from: int, stage_to: int, reason: str,
                  figures: Figures | None, command: str) -> None:
        """The release (retained) first, then the event: a reader of the event finds the release in that state."""
        self._publish_release()
        self._event(action, from_v, to_v, group, stage_from, stage_to, reason, figures, command)

    def _event(self, action: Any, from_v: int, to_v: int, group: str, stage_from: int, stage_to: int, reason: str,
               figures: Figures | None, command: str) -> None:
        r = self.rel
        ev = RolloutEvent(task=self.task, release=r.release if r else "", seq=r.seq if r else 0, action=action,
                          from_version=from_v, to_version=to_v, group=group[:512], stage_from=stage_from,
                          stage_to=stage_to, reason=reason[:512], figures=figures, forced=bool(r and r.forced),
                          command=command, ts=self.clock())
        payload = sign_msg(ev, self.private)
        self.counters.inc(f"rollout.events.{action}")
        with open(self.registry.task_dir(self.task) / "rollout-events.jsonl", "a") as f:
            f.write(payload.decode() + "\n")
        self._try(self.ports.send, self.topics.rollout_event(self.task), payload, False)

    def _try(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - the broker may be away: republished on the next connect
            self.need_republish = True
            self.counters.inc("rollout.publish_failed")
            log.warning("%s: rollout publish failed (%s); will republish: %s", self.task, getattr(fn, "__name__", fn),
                        exc)

    # ---- helpers -------------------------------------------------------------------------------
    def _entry(self, version: int) -> Entry | None:
        try:
            return self.registry.get(self.task, version)
        except RegistryError:
            return None

    def _group(self, upto: int) -> str:
        """The devices of stages 0..upto, in words."""
        r = self.rel
        if r is None:
            return ""
        rings, groups_of = self.field.rings()
        return " + ".join(groups.describe(s, rings, groups_of) for s in r.plan.stages[:upto + 1])[:512]
