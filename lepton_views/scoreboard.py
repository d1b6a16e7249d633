"""The scoreboard: what the edge-cloud split was worth in one run, per task and per model version.

Pure functions over what :class:`lepton_views.fleetview.FleetStats` collected:

- holdout figures each version's manifest carries (the worker's own scoring, cloud_worker/learning/scoring.py):
  edge-only, cloud-only and joint accuracy and macro-F1, the share escalated, and edge against
  cloud on the escalated samples;
- field figures against ground truth: edge-only, joint, the cloud's answers, the escalation ratio;
- uplink bytes per sample by topic, against the raw samples (frames as JPEG q90 at their true
  resolution, windows as their raw dtype);
- for a task with a drift phase: accuracy before it and right after it, and the labels and seconds
  until a window of predictions is back within 2 points, unattended;
- the targets that apply to the task (its spec's ``[targets]``, defaults per kind), each met or missed.
"""

from __future__ import annotations

from typing import Any

WINDOW = 100  # predictions per accuracy window around a drift
RECOVERED_WITHIN = 0.02  # back within 2 points of the accuracy before the drift
# Field joint and edge-only differ only on the escalated share of a version's predictions: with
# fewer than this many predictions a 1-point difference is a handful of samples, noise.
FIELD_JUDGED_FROM = 300

# What each target checks; which apply, and their thresholds, come from the task spec's [targets].
TARGETS = {
    "cloud_accuracy": "cloud holdout accuracy >= {v:.3f} (last version)",
    "cloud_macro_f1": "cloud holdout macro-F1 >= {v:.3f} (last version)",
    "cloud_over_edge": "cloud >= edge + {p} on the holdout (last version): the cloud is worth asking",
    "edge_within": "edge within {p} of the cloud on the holdout (last version): the cloud taught it",
    "joint_vs_cloud": "joint >= cloud - 1 point with <= {v:.0%} escalated (holdout, last version)",
    "joint_vs_edge": "joint never below edge-only (every version: holdout; field by > 1 point over >= 300 samples)",
    "uplink": "uplink >= {v:g}x below the raw samples",
    "drift": "drift recovered unattended (within 2 points of before)",
    "drift_accuracy": "field joint back to >= {v:.2f} in a drift phase of the run (100 predictions), unattended",
}


def _pts(v: float) -> str:
    return f"{v * 100:g} point{'s' if abs(v) != 0.01 else ''}"


def describe(name: str, threshold: float | None) -> str:
    return TARGETS[name].format(v=threshold or 0.0, p=_pts(threshold or 0.0))


def _acc(cell: list[int] | None) -> float | None:
    return round(cell[0] / cell[1], 4) if cell and cell[1] else None


def _phase_figures(tl: list[tuple[float, int, bool]], onset: int, label_times: list[float]
                   ) -> tuple[dict[str, Any], int]:
    """One drift phase from ``tl[onset]``: its figures, and the index where it ended. Devices enter and
    leave a phase at slightly different times, so it ends only where a long run of samples without
    drift begins (the replay looped)."""
    before = [ok for _, ok, d in tl[:onset] if not d][-WINDOW:]
    phase: list[tuple[float, int]] = []
    calm, end = 0, len(tl)
    for j in range(onset, len(tl)):
        t, ok, d = tl[j]
        if d:
            phase.append((t, ok))
            calm = 0
        else:
            calm += 1
            if calm >= WINDOW // 2:
                end = j
                break
    t0 = tl[onset][0]
    if len(before) < WINDOW // 2 or len(phase) < WINDOW:
        return ({"onset_ts": t0, "samples_before": len(before), "samples_in_drift": len(phase),
                 "recovered": None, "why": "too few predictions around the drift to judge"}, end)
    pre = sum(before) / len(before)
    out: dict[str, Any] = {"onset_ts": t0, "accuracy_before": round(pre, 4),
                           "accuracy_first_window": round(sum(ok for _, ok in phase[:WINDOW]) / WINDOW, 4),
                           "samples_in_drift": len(phase), "recovered": False}
    run = sum(ok for _, ok in phase[:WINDOW])
    best, best_t = run / WINDOW, phase[WINDOW - 1][0]
    for i in range(WINDOW, len(phase) + 1):
        if i > WINDOW:
            run += phase[i - 1][1] - phase[i - 1 - WINDOW][1]
        if run / WINDOW > best:
            best, best_t = run / WINDOW, phase[i - 1][0]
        if not out["recovered"] and run / WINDOW >= pre - RECOVERED_WITHIN:
            t_rec = phase[i - 1][0]
            out.update({"recovered": True, "seconds_to_recover": round(t_rec - t0, 1),
                        "labels_to_recover": sum(1 for t in label_times if t0 <= t <= t_rec),
                        "accuracy_recovered": round(run / WINDOW, 4)})
    out["accuracy_last_window"] = round(sum(ok for _, ok in phase[-WINDOW:]) / WINDOW, 4)
    # The best window of the phase, and when it ended: how far back the system got, unattended.
    out["best_window"] = round(best, 4)
    out["seconds_to_best"] = round(best_t - t0, 1)
    out["labels_to_best"] = sum(1 for t in label_times if t0 <= t <= best_t)
    return out, end


def drift_recovery(timeline: list[tuple[float, int, bool]], label_times: list[float]) -> dict[str, Any] | None:
    """Accuracy before the first drift phase and through it; labels and seconds until recovered (and
    the same for every later phase of the run, a looped stream's next night: ``phases``)."""
    tl = sorted(timeline)
    phases: list[dict[str, Any]] = []
    i = 0
    while True:
        onset = next((j for j in range(i, len(tl)) if tl[j][2]), None)
        if onset is None:
            break
        fig, i = _phase_figures(tl, onset, label_times)
        phases.append(fig)
        if i >= len(tl):
            break
    if not phases:
        return None
    return {**phases[0], "phases": phases}


def end_row(gauges: dict[str, float], task: str) -> dict[str, Any] | None:
    """What the worker's last status says of the task: the deployed edge beside the cloud model as it is
    now (the cloud keeps learning after the last edge version was published), on the same holdout."""
    p = f"{task}.holdout."
    if p + "cloud_acc" not in gauges or p + "edge_acc" not in gauges:
        return None
    g = {k[len(p):]: v for k, v in gauges.items() if k.startswith(p)}
    return {"version": int(gauges.get(f"{task}.version", 0)), "cloud_generation": int(gauges.get(
                f"{task}.cloud_generation", 0)),
            "holdout_edge_acc": g.get("edge_acc"), "holdout_edge_f1": g.get("edge_macro_f1"),
            "holdout_cloud_acc": g.get("cloud_acc"), "holdout_cloud_f1": g.get("cloud_macro_f1"),
            "holdout_joint_acc": g.get("joint_acc"), "holdout_joint_f1": g.get("joint_macro_f1"),
            "holdout_escalated": g.get("escalated"), "holdout_escalated_edge_acc": g.get("escalated_edge_acc"),
            "holdout_escalated_cloud_acc": g.get("escalated_cloud_acc")}


def build(task: str, kind: str, versions: dict[int, dict[str, Any]], uplink: dict[str, float],
          raw_per_sample: float | None, drift: dict[str, Any] | None, targets: Any = None,
          end: dict[str, Any] | None = None) -> dict[str, Any]:
    """One task's board: per-version rows, uplink, drift, and the targets that apply, met or missed.
    ``targets`` is the spec's TargetsCfg (None: the defaults of a spec that names none); ``end`` is the
    state the run ended in (:func:`end_row`), which the targets judge when there is one."""
    if targets is None:
        from lepton_tasks.spec import TargetsCfg

        targets = TargetsCfg()
    rows = [{"version": v, **versions[v]} for v in sorted(versions)]
    total = sum(uplink.values())
    board: dict[str, Any] = {
        "task": task, "kind": kind, "versions": rows,
        "uplink_bytes_per_sample": {k: round(v, 1) for k, v in sorted(uplink.items())},
        "uplink_per_sample": round(total, 1),
        "raw_per_sample": round(raw_per_sample, 1) if raw_per_sample else None,
        "raw_over_uplink": round(raw_per_sample / total, 2) if raw_per_sample and total else None,
        "drift": drift, "end": end,
    }
    out: dict[str, dict[str, Any]] = {}

    def check(name: str, threshold: float | None, met: bool, value: str) -> None:
        out[name] = {"met": bool(met), "value": value, "target": describe(name, threshold),
                     "threshold": threshold}

    last = next((r for r in reversed(rows) if r.get("holdout_cloud_acc") is not None), None)
    if end is not None and end.get("holdout_joint_acc") is not None:
        last = end
    if last is not None:
        e, c, j = last["holdout_edge_acc"], last["holdout_cloud_acc"], last.get("holdout_joint_acc")
        tag = f"v{last['version']}" + (f" + cloud {last['cloud_generation']}" if last is end else "")
        if targets.cloud_accuracy is not None:
            check("cloud_accuracy", targets.cloud_accuracy, c >= targets.cloud_accuracy, f"{tag}: cloud {c:.3f}")
        cf1 = last.get("holdout_cloud_f1")
        if targets.cloud_macro_f1 is not None and cf1 is not None:
            check("cloud_macro_f1", targets.cloud_macro_f1, cf1 >= targets.cloud_macro_f1, f"{tag}: cloud {cf1:.3f}")
        if targets.cloud_over_edge is not None:
            check("cloud_over_edge", targets.cloud_over_edge, c >= e + targets.cloud_over_edge - 1e-9,
                  f"{tag}: cloud {c:.3f} vs edge {e:.3f} ({(c - e) * 100:+.1f} points)")
        if targets.edge_within is not None:
            check("edge_within", targets.edge_within, e >= c - targets.edge_within - 1e-9,
                  f"{tag}: edge {e:.3f} vs cloud {c:.3f}")
        if j is not None:
            esc = last["holdout_escalated"]
            check("joint_vs_cloud", targets.escalated_max, j >= c - 0.01 and esc <= targets.escalated_max + 1e-9,
                  f"{tag}: joint {j:.3f} vs cloud {c:.3f}, {esc:.0%} escalated")
    below = [r["version"] for r in rows
             if (r.get("holdout_joint_acc") is not None and r["holdout_joint_acc"] < r["holdout_edge_acc"] - 1e-9)
             or (r.get("field_joint_acc") is not None and r.get("field_edge_acc") is not None
                 and r.get("field_samples", 0) >= FIELD_JUDGED_FROM
                 and r["field_joint_acc"] < r["field_edge_acc"] - 0.01)]
    check("joint_vs_edge", None, not below, f"below edge-only in v{below}" if below else "never below")
    reduction = targets.uplink_reduction if targets.uplink_reduction is not None else (10.0 if kind == "image"
                                                                                      else None)
    if reduction and board["raw_over_uplink"] is not None:
        check("uplink", reduction, board["raw_over_uplink"] >= reduction, f"{board['raw_over_uplink']}x below raw")
    if drift is not None:
        check("drift", None, bool(drift.get("recovered")),
              f"{drift['labels_to_recover']} labels, {drift['seconds_to_recover']} s" if drift.get("recovered")
              else drift.get("why", "not recovered in the run"))
        if targets.drift_accuracy is not None:
            judged = [p for p in drift.get("phases", [drift]) if p.get("best_window") is not None]
            met = [n for n, p in enumerate(judged, 1) if p["best_window"] >= targets.drift_accuracy]
            value = "; ".join(f"phase {n}: best window {p['best_window']:.3f} after {p['seconds_to_best']} s "
                              f"({p['labels_to_best']} labels)" for n, p in enumerate(judged, 1))
            check("drift_accuracy", targets.drift_accuracy, bool(met),
                  value or drift.get("why", "no window in the drift phase"))
    board["targets"] = out
    return board


def headline(boards: list[dict[str, Any]]) -> str:
    """One line per task: its last version beside the reference method trained offline on the same split
    (``board["reference"]``, from bench/reference.py), when the board has one."""
    out = ["| task | last version | labels | holdout acc edge / cloud / joint | macro-F1 edge / cloud / joint | "
           "reference, same split (offline) | escalated | uplink vs raw |", "|---|---|---|---|---|---|---|---|"]
    for b in boards:
        last = next((r for r in reversed(b["versions"]) if r.get("holdout_cloud_acc") is not None), None)
        if b.get("end") and b["end"].get("holdout_joint_acc") is not None:
            labels = last.get("labels", "–") if last else "–"
            last = {**b["end"], "labels": labels}
        if last is None:
            continue
        ref = b.get("reference")
        ref_s = (f"{ref['method'].split(' (')[0]}: {ref['holdout_acc']:.3f} (F1 {ref['holdout_macro_f1']:.3f}, "
                 f"{ref['rows']} rows)") if ref else "–"
        up = f"{b['raw_over_uplink']}x less" if b.get("raw_over_uplink") else "–"
        if b.get("raw_over_uplink") and b["raw_over_uplink"] < 1:
            up = f"{1 / b['raw_over_uplink']:.1f}x more"
        tag = f"v{last['version']}" + (f", cloud {last['cloud_generation']}" if "cloud_generation" in last else "")
        out.append(f"| {b['task']} | {tag} | {last.get('labels', '–')} | "
                   f"{last['holdout_edge_acc']:.3f} / {last['holdout_cloud_acc']:.3f} / {last['holdout_joint_acc']:.3f} | "
                   f"{last.get('holdout_edge_f1') or 0:.3f} / {last.get('holdout_cloud_f1') or 0:.3f} / "
                   f"{last.get('holdout_joint_f1') or 0:.3f} | {ref_s} | {last['holdout_escalated']:.0%} | {up} |")
    return "\n".join(out)


def markdown(boards: list[dict[str, Any]]) -> str:
    """The README table: one line per task and version, then the targets."""
    out = ["| task | version | labels | holdout edge / cloud / joint acc | holdout macro-F1 edge / cloud / joint | "
           "escalated (holdout / field) | on escalated: edge vs cloud | field edge / joint | uplink B/sample vs raw |",
           "|---|---|---|---|---|---|---|---|---|"]

    def f(v: Any) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for b in boards:
        up = f"{b['uplink_per_sample']:.0f} vs {b['raw_per_sample']:.0f} ({b['raw_over_uplink']}x)" \
            if b.get("raw_per_sample") else f"{b['uplink_per_sample']:.0f}"
        for i, r in enumerate(b["versions"]):
            esc = r.get("holdout_escalated")
            fesc = r.get("field_escalation_ratio")
            out.append(
                f"| {b['task'] if i == 0 else ''} | v{r['version']} | {f(r.get('labels'))} | "
                f"{f(r.get('holdout_edge_acc'))} / "
                f"{f(r.get('holdout_cloud_acc'))} / {f(r.get('holdout_joint_acc'))} | {f(r.get('holdout_edge_f1'))} / "
                f"{f(r.get('holdout_cloud_f1'))} / {f(r.get('holdout_joint_f1'))} | "
                f"{'–' if esc is None else f'{esc:.0%}'} / {'–' if fesc is None else f'{fesc:.0%}'} | "
                f"{f(r.get('holdout_escalated_edge_acc'))} vs {f(r.get('holdout_escalated_cloud_acc'))} | "
                f"{f(r.get('field_edge_acc'))} / {f(r.get('field_joint_acc'))} | {up if i == 0 else ''} |")
        e = b.get("end")
        if e and e.get("holdout_joint_acc") is not None:
            out.append(f"|  | end: v{e['version']}, cloud {e['cloud_generation']} | | {f(e['holdout_edge_acc'])} / "
                       f"{f(e['holdout_cloud_acc'])} / {f(e['holdout_joint_acc'])} | {f(e.get('holdout_edge_f1'))} / "
                       f"{f(e.get('holdout_cloud_f1'))} / {f(e.get('holdout_joint_f1'))} | "
                       f"{e['holdout_escalated']:.0%} / – | {f(e.get('holdout_escalated_edge_acc'))} vs "
                       f"{f(e.get('holdout_escalated_cloud_acc'))} | | |")
    out += ["", "| task | target | met | value |", "|---|---|---|---|"]
    for b in boards:
        for name, t in b["targets"].items():
            what = t.get("target") or describe(name, t.get("threshold"))
            out.append(f"| {b['task']} | {what} | {'yes' if t['met'] else '**no**'} | {t['value']} |")
    return "\n".join(out)
