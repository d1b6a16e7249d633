"""JSON views of the console's state for the pages (every string is rendered by the browser as text)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from lepton_console import ranking
from lepton_console.state import ConsoleState, Item
from lepton_views.fleetview import metric_value

MAX_DECISIONS = 30
MAX_ROLLOUT_EVENTS = 50  # stage changes shown on the Models page, newest first


def item_json(st: ConsoleState, it: Item) -> dict[str, Any]:
    classes = st.classes(it.task)

    def name(c: int | None) -> str | None:
        if c is None:
            return None
        return classes[c] if 0 <= c < len(classes) else f"class {c}"

    top = sorted(range(len(it.scores)), key=lambda c: -it.scores[c])[:3]
    return {
        "key": it.key, "device": it.device, "stream": it.stream, "task": it.task, "sample": it.sample,
        "ts": it.ts, "model_version": it.model_version, "reason": it.reason, "ref": it.ref,
        "edge": [{"label": c, "name": name(c), "p": it.scores[c]} for c in top],
        "cloud": None if it.cloud_label is None else {"label": it.cloud_label, "name": name(it.cloud_label),
                                                      "p": it.cloud_conf, "defer": it.cloud_defer,
                                                      "model": it.cloud_model},
        "final": None if it.final_label is None else {"label": it.final_label, "name": name(it.final_label),
                                                      "source": it.final_source},
        "sample_kind": it.shown.kind, "sample_note": it.shown.note, "width": it.shown.width,
        "height": it.shown.height,
        "score": round(ranking.score(it, dict(st.label_counts)), 3),
    }


def queue_json(st: ConsoleState, skipped: set[str], limit: int = 30) -> dict[str, Any]:
    items = st.ranked(skipped, limit)
    tasks = sorted({it.task for it in items} | set(st.fleet.manifests))
    with st.lock:
        waiting = len(st.items)
        counts = {f"{t}:{c}": n for (t, c), n in st.label_counts.items() if n}
    return {"items": [item_json(st, it) for it in items], "waiting": waiting,
            "classes": {t: st.classes(t) for t in tasks}, "label_counts": counts}


def review_json(st: ConsoleState, task: str | None, label: int | None, limit: int = 200) -> dict[str, Any]:
    with st.lock:
        rows = list(st.history.values())[::-1]
    out, by_class = [], {}
    for h in rows:
        by_class.setdefault(f"{h.item.task}:{h.label}", 0)
        by_class[f"{h.item.task}:{h.label}"] += 1
        if (task is None or h.item.task == task) and (label is None or h.label == label) and len(out) < limit:
            j = item_json(st, h.item)
            j.update(label=h.label, label_name=(st.classes(h.item.task) + [None] * (h.label + 1))[h.label]
                     if h.label >= 0 else "none of these", by=h.by, labelled_at=h.ts)
            out.append(j)
    tasks = sorted({h.item.task for h in rows})
    return {"labels": out, "by_class": by_class, "classes": {t: st.classes(t) for t in tasks}}


def fleet_json(st: ConsoleState) -> dict[str, Any]:
    hub = st.fleet.hub
    return {"devices": st.extras.rows(st.fleet), "now": time.time(),
            "hub": None if hub is None else {"id": hub.id, "state": hub.state,
                                             "devices_online": hub.gauges.get("devices_online")},
            "workers": {w: s.state for w, s in st.fleet.workers.items()}}


def device_json(st: ConsoleState, device: str) -> dict[str, Any]:
    preds, events = st.extras.device(device)
    rows = [r for r in st.extras.rows(st.fleet) if r["device"] == device]
    classes = st.classes(rows[0]["task"]) if rows else []
    return {"row": rows[0] if rows else None,
            "preds": [{"ts": p.ts, "sample": p.sample, "label": p.label,
                       "name": classes[p.label] if p.label < len(classes) else f"class {p.label}",
                       "confidence": round(p.confidence, 3), "source": p.source, "escalated": p.escalated,
                       "model_version": p.model_version, "ref": p.ref} for p in preds],
            "events": [{"ts": t, "what": w} for t, w in events],
            "snapshots": [{"stream": s.stream, "name": s.name, "ts": s.ts, "bytes": len(s.jpeg),
                           "url": f"/snapshot/{s.device}/{s.stream}/{s.name}.jpg"}
                          for s in st.snapshots.of(device)]}


def models_json(st: ConsoleState, registry: Path | None) -> dict[str, Any]:
    fs = st.fleet
    with fs._lock:  # FleetStats keeps its tables under its own lock
        metrics = dict(fs.version_metrics)
        published = dict(fs.published)
        joint = {k: list(v) for k, v in fs.joint.items()}
        releases = fs.rollout.summary() or {"releases": [], "events": []}
        gauges = {k: v for w in fs.workers.values() for k, v in w.gauges.items() if ".rollout." in k}
        live = fs.rollout.line(gauges)
    tasks: dict[str, Any] = {}
    for (task, ver), m in sorted(metrics.items()):
        t = tasks.setdefault(task, {"versions": [], "devices": {}, "decisions": [], "classes": st.classes(task)})
        j = joint.get((task, ver))
        t["versions"].append({"version": ver, "created": published.get((task, ver), (None,))[0],
                              "holdout_edge": m.get("accuracy"), "holdout_cloud": m.get("cloud_acc"),
                              "holdout_joint": m.get("joint_acc"), "defer": bool(m.get("defer", 0.0)),
                              "field_joint": round(j[0] / j[1], 4) if j and j[1] else None,
                              "metrics": {k: metric_value(k, v) for k, v in m.items()}})
    for r in fs.rows():
        if r.task in tasks:
            tasks[r.task]["devices"].setdefault(str(r.model), []).append(r.device)
    for task, t in tasks.items():
        t["decisions"] = decisions(registry, task)
    workers = {w: {"state": s.state, "published": s.counters.get("learn.published", 0),
                   "refused": s.counters.get("learn.rejected", 0)} for w, s in fs.workers.items()}
    rollout = {"releases": releases["releases"], "events": releases["events"][-MAX_ROLLOUT_EVENTS:][::-1],
               "live": live.splitlines()}
    return {"tasks": tasks, "workers": workers, "rollout": rollout}


def decisions(registry: Path | None, task: str) -> list[dict[str, Any]]:
    """The worker's gate decisions (registry/{task}/decisions.jsonl), newest first, when it is on this host."""
    if registry is None:
        return []
    path = Path(registry) / task / "decisions.jsonl"
    try:
        lines = path.read_text(errors="replace").splitlines()[-MAX_DECISIONS:]
    except OSError:
        return []
    out = []
    for line in reversed(lines):
        try:
            d = json.loads(line)
        except ValueError:
            continue
        if isinstance(d, dict):
            out.append({k: d.get(k) for k in ("ts", "event", "trigger", "candidate", "published", "version",
                                              "candidate_acc", "deployed_version", "deployed_acc", "why")})
    return out
