"""Operator commands to a task's release (the RolloutManager's part that answers `lepton-worker rollout ...`).

Each command is verified before it gets here (cloud_worker/rollout/wiring.py: signature, task, age), runs
once per id, and is answered with a signed event carrying its id: the change it made, or ``refused``
with the reason.
"""

from __future__ import annotations

from typing import Any

from cloud_worker.rollout.plan import plan_from
from shared.process.counters import Counters
from shared.protocol.schemas import Pin, Release, RolloutCommand


class OperatorCommands:
    """Mixed into RolloutManager: pause, resume, promote, abort, pin, unpin.

    The manager's state and stage moves it uses (``_advance``, ``_rollback``, ``_announce``, ``_event``,
    ``_entry``, ``_try``, ``_group``, ``_seq``, ``save``, ``describe``) are the manager's; only the
    fields are named here, so this module need not import the manager that imports it.
    """

    rel: Release | None
    counters: Counters
    cmd_ids: Any
    last: Any
    settings: Any
    task: str
    fleet: int

    def command(self, cmd: RolloutCommand) -> None:
        """An operator's verified command; answered with an event that carries its id."""
        if cmd.id in self.cmd_ids:
            self.counters.inc("rollout.cmd.duplicate")
            return
        self.cmd_ids.append(cmd.id)
        self.counters.inc(f"rollout.cmd.{cmd.action}")
        if cmd.action in ("pin", "unpin"):
            self._pin(cmd)
            return
        r = self.rel
        if r is None or not self.active:
            return self._refuse(cmd, f"no release is running ({self.describe()})")
        figs = self.last.figures if self.last is not None else None
        if cmd.action == "pause":
            if r.state != "running":
                return self._refuse(cmd, "already paused")
            self._set_state("paused", cmd, "operator paused the automatic decisions")
        elif cmd.action == "resume":
            if r.state != "paused":
                return self._refuse(cmd, "not paused")
            self._set_state("running", cmd, "operator resumed the automatic decisions")
        elif cmd.action == "promote":
            self._advance("operator promote", figs, cmd.id)
        else:
            self._rollback("aborted", "operator abort", figs.model_dump() if figs else None, cmd.id)

    def _set_state(self, state: str, cmd: RolloutCommand, why: str) -> None:
        r = self.rel
        assert r is not None
        self.rel = r.model_copy(update={"state": state, "seq": self._seq(), "reason": why, "updated": self.clock()})
        self.save()
        self._announce(cmd.action, r.control, r.candidate, self._group(r.stage), r.stage, r.stage, why,  # type: ignore
                       self.last.figures if self.last else None, cmd.id)

    def _pin(self, cmd: RolloutCommand) -> None:
        assert cmd.group is not None
        pins = [p for p in (self.rel.pins if self.rel else []) if p.group != cmd.group]
        old = next((p.version for p in (self.rel.pins if self.rel else []) if p.group == cmd.group), 0)
        if cmd.action == "unpin":
            if not old:
                return self._refuse(cmd, f"group {cmd.group} is not pinned")
            new, why = self.fleet, f"operator unpinned {cmd.group}"
        else:
            entry = self._entry(cmd.version or 0)
            if entry is None:
                return self._refuse(cmd, f"v{cmd.version} is not in the registry")
            pins.append(Pin(group=cmd.group, version=entry.version))
            new, why = entry.version, f"operator pinned {cmd.group} to v{entry.version}"
            self._try(self.ports.publish_version, entry)
            self.versioned.add(entry.version)
        now = self.clock()
        if self.rel is None:  # pins without a release: a finished one that keeps the fleet where it is
            plan = plan_from(self.settings)
            self.rel = Release(task=self.task, release=f"{self.task}-pins", seq=self._seq(), state="promoted",
                               candidate=self.fleet, control=self.fleet, stage=len(plan.stages) - 1, plan=plan,
                               pins=pins, reason=why, started=now, updated=now)
        else:
            self.rel = self.rel.model_copy(update={"pins": pins, "seq": self._seq(), "reason": why, "updated": now})
        self.save()
        self._announce(cmd.action, old, new, cmd.group, self.rel.stage, self.rel.stage, why, None, cmd.id)

    def _refuse(self, cmd: RolloutCommand, why: str) -> None:
        self.counters.inc("rollout.cmd.refused")
        self.save()  # its id, so it is not run again after a restart
        r = self.rel
        self._event("refused", 0, 0, cmd.group or "", r.stage if r else 0, r.stage if r else 0,
                    f"{cmd.action} refused: {why}", None, cmd.id)
