"""Staged rollouts as the fleet view sees them: each release's state and every stage change with its figures.

Fed by FleetStats (lepton_views/fleetview.py) with the retained ``Release`` messages and the
``RolloutEvent`` messages of ``rollout/{task}/event``; gives `lepton monitor` its rollout line and
`lepton up`'s summary and report their rollout section.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from shared.protocol.schemas import ArmFigures, Figures, Release, RolloutEvent

MAX_EVENTS = 1000
DECISIONS = ("promote", "rollback", "abort")


def _arm(a: ArmFigures) -> dict[str, Any]:
    def r(v: float | None, n: int = 6) -> float | None:
        return round(v, n) if v is not None else None

    return {"version": a.version, "devices": a.devices, "samples": a.samples, "labelled": a.labelled,
            "accuracy": r(a.accuracy), "escalation_rate": r(a.escalation_rate), "agreement": r(a.agreement),
            "latency_ms_p50": r(a.latency_ms_p50, 3), "error_rate": r(a.error_rate), "swap_failures": a.swap_failures}


def figures_dict(f: Figures | None) -> dict[str, Any] | None:
    if f is None:
        return None
    return {"metric": f.metric, "candidate": _arm(f.candidate), "control": _arm(f.control),
            "difference": round(f.difference, 4) if f.difference is not None else None,
            "bounds": [round(f.lower, 4), round(f.upper, 4)] if f.lower is not None and f.upper is not None else None,
            "margin": f.margin, "test": f.test, "elapsed_s": round(f.elapsed_s, 1)}


def _stage_text(rel: Release) -> str:
    s = rel.plan.stages[rel.stage]
    parts = list(s.groups)
    threshold = s.ring_below if s.ring_below is not None else s.share
    if threshold is not None:
        parts.append("everyone" if threshold >= 100 else f"ring<{threshold:.1f}")
    return " or ".join(parts)


class RolloutView:
    """Not thread-safe on its own: FleetStats calls it under its lock."""

    def __init__(self) -> None:
        self.releases: dict[str, Release] = {}  # by release id, the newest seq seen
        self.events: deque[RolloutEvent] = deque(maxlen=MAX_EVENTS)

    def release(self, rel: Release) -> None:
        old = self.releases.get(rel.release)
        if old is None or rel.seq >= old.seq:
            self.releases[rel.release] = rel

    def event(self, ev: RolloutEvent) -> None:
        self.events.append(ev)

    def active(self) -> list[Release]:
        return [r for r in self.releases.values() if r.state in ("running", "paused")]

    def line(self, gauges: dict[str, float]) -> str:
        """One line per active release (the monitor's caption), with the judge's live figures if known."""
        out = []
        for r in self.active():
            p = f"{r.task}.rollout."
            live = ""
            if gauges.get(p + "candidate") == r.candidate and p + "candidate_labelled" in gauges:
                def acc(arm: str, p: str = p) -> str:
                    a = gauges.get(p + f"{arm}_accuracy")
                    return f"{a:.3f}" if a is not None else "-"

                live = (f"{r.release} so far: candidate acc {acc('candidate')} "
                        f"(n={int(gauges[p + 'candidate_labelled'])}) vs control {acc('control')} "
                        f"(n={int(gauges.get(p + 'control_labelled', 0))})")
                if p + "lower" in gauges:
                    live += f", lower bound {gauges[p + 'lower']:+.3f} vs -{r.plan.margin:g}"
            out.append(f"{r.release} {r.state}: v{r.candidate} on stage {r.stage + 1}/{len(r.plan.stages)} "
                       f"({_stage_text(r)}), others v{r.control}")
            if live:
                out.append(live)
        last = next((e for e in reversed(self.events) if e.action in DECISIONS), None)
        if last is not None:
            out.append(f"last decision: {last.release} {last.action} v{last.from_version}->v{last.to_version}: "
                       f"{last.reason[:160]}")
        return "\n".join(out)

    def token(self) -> str:
        """The status line's rollout=... token: each active release as id:state:stage."""
        act = self.active()
        return ",".join(f"{r.release}:{r.state}:{r.stage + 1}/{len(r.plan.stages)}" for r in act) or "-"

    def summary(self) -> dict[str, Any] | None:
        if not self.releases and not self.events:
            return None
        decisions = [e for e in self.events if e.action != "refused"]
        return {
            "promoted": sum(1 for r in self.releases.values() if r.state == "promoted"),
            "rolled_back": sum(1 for r in self.releases.values() if r.state in ("rolled_back", "aborted")),
            "releases": [{"release": r.release, "task": r.task, "state": r.state, "candidate": r.candidate,
                          "control": r.control, "restored": r.restored, "stage": f"{r.stage + 1}/{len(r.plan.stages)}",
                          "forced": r.forced, "pins": {p.group: p.version for p in r.pins}}
                         for r in sorted(self.releases.values(), key=lambda r: r.started)],
            "events": [{"ts": round(e.ts, 3), "release": e.release, "action": e.action,
                        "from_version": e.from_version, "to_version": e.to_version, "group": e.group,
                        "reason": e.reason, "forced": e.forced, "figures": figures_dict(e.figures)}
                       for e in decisions],
        }
