"""The scoreboard: what the edge-cloud split was worth in one run, per task and per model version.

Pure functions over what :class:`lepton_cli.fleetview.FleetStats` collected:

- holdout figures each version's manifest carries (the worker's own scoring, cloud_worker/scoring.py):
  edge-only, cloud-only and joint accuracy and macro-F1, the share escalated, and edge against
  cloud on the escalated samples;
- field figures against ground truth: edge-only, joint, the cloud's answers, the escalation ratio;
- uplink bytes per sample by topic, against the raw samples (frames as JPEG q90 at their true
  resolution, windows as their raw dtype);
- for a task with a drift phase: accuracy before it and right after it, and the labels and seconds
  until a window of predictions is back within 2 points, unattended;
- the targets of docs/TASKS.md, each met or missed.
"""

from __future__ import annotations

from typing import Any

WINDOW = 100  # predictions per accuracy window around a drift
RECOVERED_WITHIN = 0.02  # back within 2 points of the accuracy before the drift
# Field joint and edge-only differ only on the escalated share of a version's predictions: with
# fewer than this many predictions a 1-point difference is a handful of samples, noise.
FIELD_JUDGED_FROM = 300

TARGETS = {
    "joint_vs_cloud": "joint >= cloud-only - 1 point with <= 20% of samples escalated (holdout, last version)",
    "joint_vs_edge": "joint never below edge-only (every version: holdout; field by > 1 point over >= 300 samples)",
    "camera_uplink": "camera uplink >= 20x below the raw frames",
    "drift": "drift recovered unattended",
}


def _acc(cell: list[int] | None) -> float | None:
    return round(cell[0] / cell[1], 4) if cell and cell[1] else None


def drift_recovery(timeline: list[tuple[float, int, bool]], label_times: list[float]) -> dict[str, Any] | None:
    """Accuracy before the first drift phase and through it; labels and seconds until recovered."""
    tl = sorted(timeline)
    onset = next((i for i, (_, _, d) in enumerate(tl) if d), None)
    if onset is None:
        return None
    before = [ok for _, ok, d in tl[:onset] if not d][-WINDOW:]
    # The drift samples of the first drift phase: devices enter and leave it at slightly different
    # times, so it ends only where a long run of samples without drift begins (the replay looped).
    phase: list[tuple[float, int]] = []
    calm = 0
    for t, ok, d in tl[onset:]:
        if d:
            phase.append((t, ok))
            calm = 0
        else:
            calm += 1
            if calm >= WINDOW // 2:
                break
    if len(before) < WINDOW // 2 or len(phase) < WINDOW:
        return {"onset_ts": tl[onset][0], "samples_before": len(before), "samples_in_drift": len(phase),
                "recovered": None, "why": "too few predictions around the drift to judge"}
    pre = sum(before) / len(before)
    first = sum(ok for _, ok in phase[:WINDOW]) / WINDOW
    out: dict[str, Any] = {"onset_ts": tl[onset][0], "accuracy_before": round(pre, 4),
                           "accuracy_first_window": round(first, 4), "samples_in_drift": len(phase),
                           "recovered": False}
    run = sum(ok for _, ok in phase[:WINDOW])
    for i in range(WINDOW, len(phase) + 1):
        if i > WINDOW:
            run += phase[i - 1][1] - phase[i - 1 - WINDOW][1]
        if run / WINDOW >= pre - RECOVERED_WITHIN:
            t_rec = phase[i - 1][0]
            out.update({"recovered": True, "seconds_to_recover": round(t_rec - tl[onset][0], 1),
                        "labels_to_recover": sum(1 for t in label_times if tl[onset][0] <= t <= t_rec),
                        "accuracy_recovered": round(run / WINDOW, 4)})
            break
    out["accuracy_last_window"] = round(sum(ok for _, ok in phase[-WINDOW:]) / WINDOW, 4)
    return out


def build(task: str, kind: str, versions: dict[int, dict[str, Any]], uplink: dict[str, float],
          raw_per_sample: float | None, drift: dict[str, Any] | None) -> dict[str, Any]:
    """One task's board: per-version rows, uplink, drift, and the targets met or missed."""
    rows = [{"version": v, **versions[v]} for v in sorted(versions)]
    total = sum(uplink.values())
    board: dict[str, Any] = {
        "task": task, "kind": kind, "versions": rows,
        "uplink_bytes_per_sample": {k: round(v, 1) for k, v in sorted(uplink.items())},
        "uplink_per_sample": round(total, 1),
        "raw_per_sample": round(raw_per_sample, 1) if raw_per_sample else None,
        "raw_over_uplink": round(raw_per_sample / total, 2) if raw_per_sample and total else None,
        "drift": drift,
    }
    targets: dict[str, dict[str, Any]] = {}
    last = next((r for r in reversed(rows) if r.get("holdout_joint_acc") is not None), None)
    if last is not None:
        ok = (last["holdout_joint_acc"] >= last["holdout_cloud_acc"] - 0.01 and last["holdout_escalated"] <= 0.20)
        targets["joint_vs_cloud"] = {"met": ok, "value": f"joint {last['holdout_joint_acc']:.3f} vs cloud "
                                     f"{last['holdout_cloud_acc']:.3f}, {last['holdout_escalated']:.0%} escalated"}
    below = [r["version"] for r in rows
             if (r.get("holdout_joint_acc") is not None and r["holdout_joint_acc"] < r["holdout_edge_acc"] - 1e-9)
             or (r.get("field_joint_acc") is not None and r.get("field_edge_acc") is not None
                 and r.get("field_samples", 0) >= FIELD_JUDGED_FROM
                 and r["field_joint_acc"] < r["field_edge_acc"] - 0.01)]
    targets["joint_vs_edge"] = {"met": not below, "value": f"below edge-only in v{below}" if below else "never below"}
    if kind == "image" and board["raw_over_uplink"] is not None:
        targets["camera_uplink"] = {"met": board["raw_over_uplink"] >= 20,
                                    "value": f"{board['raw_over_uplink']}x below raw"}
    if drift is not None:
        targets["drift"] = {"met": bool(drift.get("recovered")),
                            "value": (f"{drift['labels_to_recover']} labels, {drift['seconds_to_recover']} s"
                                      if drift.get("recovered") else drift.get("why", "not recovered in the run"))}
    board["targets"] = targets
    return board


def markdown(boards: list[dict[str, Any]]) -> str:
    """The README table: one line per task and version, then the targets."""
    out = ["| task | version | holdout edge / cloud / joint acc | holdout macro-F1 edge / cloud / joint | "
           "escalated (holdout / field) | on escalated: edge vs cloud | field edge / joint | uplink B/sample vs raw |",
           "|---|---|---|---|---|---|---|---|"]

    def f(v: Any) -> str:
        return "–" if v is None else (f"{v:.3f}" if isinstance(v, float) else str(v))

    for b in boards:
        up = f"{b['uplink_per_sample']:.0f} vs {b['raw_per_sample']:.0f} ({b['raw_over_uplink']}x)" \
            if b.get("raw_per_sample") else f"{b['uplink_per_sample']:.0f}"
        for i, r in enumerate(b["versions"]):
            esc = r.get("holdout_escalated")
            fesc = r.get("field_escalation_ratio")
            out.append(
                f"| {b['task'] if i == 0 else ''} | v{r['version']} | {f(r.get('holdout_edge_acc'))} / "
                f"{f(r.get('holdout_cloud_acc'))} / {f(r.get('holdout_joint_acc'))} | {f(r.get('holdout_edge_f1'))} / "
                f"{f(r.get('holdout_cloud_f1'))} / {f(r.get('holdout_joint_f1'))} | "
                f"{'–' if esc is None else f'{esc:.0%}'} / {'–' if fesc is None else f'{fesc:.0%}'} | "
                f"{f(r.get('holdout_escalated_edge_acc'))} vs {f(r.get('holdout_escalated_cloud_acc'))} | "
                f"{f(r.get('field_edge_acc'))} / {f(r.get('field_joint_acc'))} | {up if i == 0 else ''} |")
    out += ["", "| task | target | met | value |", "|---|---|---|---|"]
    for b in boards:
        for name, t in b["targets"].items():
            out.append(f"| {b['task']} | {TARGETS[name]} | {'yes' if t['met'] else '**no**'} | {t['value']} |")
    return "\n".join(out)
