"""`lepton report SUMMARY.json -o run.html` (and `lepton up --report run.html`): one HTML file to look at.

The page is self-contained: inline CSS and inline SVG (lepton_cli/svgplot.py), no script, no
font, no CDN, nothing fetched. Its plots come from the summary's ``timeline`` (cumulative
samples of the fleet view that `lepton up` takes every ``--sample-every`` seconds) and
``events`` (hot swaps, refusals, publications):

- accuracy over time per model version: edge-only, cloud answers, joint (edge + cloud);
- escalation ratio over time;
- uplink bytes by topic, stacked, against the raw frames' JPEG size;
- hub queue depth and drops (dropped + expired) per priority class;
- the hot-swap timeline: which version each device ran when, publications and refusals;
- staged rollouts (when the summary has them): every stage change with the figures behind it.

Rates and accuracies are over a sliding window (``WINDOW_S``) of the cumulative counts, so a
point says how the fleet did in the last few seconds, not since the start.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from html import escape
from pathlib import Path
from typing import Any

from lepton_cli.svgplot import Chart, Lanes, color

WINDOW_S = 10.0  # accuracy and escalation ratio over the last this-many seconds
MIN_SAMPLES = 5  # fewer samples than this in a window leave a gap rather than a noisy point
KINDS = (("edge", "edge-only (the device's own model)"), ("cloud", "cloud answers (escalated samples)"),
         ("joint", "joint (what the device finally acted on)"))


class ReportError(ValueError):
    """The summary cannot be turned into a report (not a `lepton up` summary, no time series)."""


def _points(summary: dict[str, Any]) -> tuple[float, list[dict[str, Any]], float]:
    tl = summary.get("timeline")
    if not isinstance(tl, dict) or not isinstance(tl.get("points"), list):
        raise ReportError("the summary has no `timeline` (it needs a summary from `lepton up --summary FILE`)")
    pts = [p for p in tl["points"] if isinstance(p, dict) and "ts" in p]
    if not pts:
        raise ReportError("the summary's timeline is empty (the run ended before the first sample)")
    t0 = float(tl.get("t0") or pts[0]["ts"])
    return t0, pts, float(tl.get("sample_every_s") or 2.0)


def _window(n_points: int, every: float) -> int:
    return max(1, min(n_points - 1, round(WINDOW_S / every))) if n_points > 1 else 1


def windowed_ratio(num: list[float], den: list[float], w: int, min_den: float = MIN_SAMPLES) -> list[float | None]:
    """(num[i] - num[i-w]) / (den[i] - den[i-w]) for cumulative series; None where too few samples."""
    out: list[float | None] = []
    for i in range(len(num)):
        j = max(0, i - w)
        dn = den[i] - den[j] if i else den[i]
        dc = num[i] - num[j] if i else num[i]
        out.append(dc / dn if dn >= min_den else None)
    return out


def _versions(pts: list[dict[str, Any]], kind: str) -> list[tuple[str, str]]:
    keys = {(task, ver) for p in pts for task, vers in p.get(kind, {}).items() for ver in vers}
    return sorted(keys, key=lambda k: (k[0], int(k[1])))


def accuracy_chart(pts: list[dict[str, Any]], t0: float, w: int, kind: str, title: str, tasks: int) -> Chart:
    xs = [p["ts"] - t0 for p in pts]
    lines = []
    for i, (task, ver) in enumerate(_versions(pts, kind)):
        c = [float(p.get(kind, {}).get(task, {}).get(ver, [0, 0])[0]) for p in pts]
        n = [float(p.get(kind, {}).get(task, {}).get(ver, [0, 0])[1]) for p in pts]
        label = f"{task} v{ver}" if tasks > 1 else f"v{ver}"
        lines.append((windowed_ratio(c, n, w), label, color(int(ver) - 1 + 3 * i * (tasks > 1))))
    # Zoom to where the lines are (accuracies of 0.85 vs 0.95 must not look alike), always up to 1.
    lo = min((y for ys, _, _ in lines for y in ys if y is not None), default=0.0)
    ch = Chart(f"Accuracy, {title}", y_label=f"accuracy (last {WINDOW_S:g} s)",
               y_range=(max(0.0, math.floor((lo - 0.02) * 10) / 10), 1.0), x_range=(0.0, max(xs[-1], 1.0)))
    for ys, label, col in lines:
        ch.line(xs, ys, label, col)
    return ch


def _publications(summary: dict[str, Any], t0: float) -> list[tuple[float, str]]:
    pubs = (summary.get("events") or {}).get("published", [])
    return [(e["ts"] - t0, f"v{e['version']} published") for e in pubs if e["ts"] >= t0 - 1]


def escalation_chart(pts: list[dict[str, Any]], t0: float, w: int, marks: list[tuple[float, str]]) -> Chart:
    xs = [p["ts"] - t0 for p in pts]
    ch = Chart("Escalation ratio over time", y_label=f"escalated (last {WINDOW_S:g} s)", y_range=(0.0, 1.0),
               x_range=(0.0, max(xs[-1], 1.0)))
    ch.line(xs, windowed_ratio([float(p["escalated"]) for p in pts], [float(p["preds"]) for p in pts], w),
            "escalated / predictions", color(3))
    for x, label in marks:
        ch.vmark(x, label)
    return ch


def uplink_chart(pts: list[dict[str, Any]], t0: float) -> Chart:
    xs = [p["ts"] - t0 for p in pts]
    topics = sorted({k for p in pts for k in p.get("uplink", {})},
                    key=lambda k: -max(p.get("uplink", {}).get(k, 0) for p in pts))
    ch = Chart("Uplink bytes by topic against raw frames", y_label="kB sent (cumulative)",
               x_range=(0.0, max(xs[-1], 1.0)))
    ch.stacked_areas(xs, [(k, [p.get("uplink", {}).get(k, 0) / 1e3 for p in pts], color(i))
                          for i, k in enumerate(topics)])
    ch.line(xs, [p.get("raw", 0) / 1e3 for p in pts], "raw (JPEG)", "#222", dash="6 4")
    return ch


def hub_charts(pts: list[dict[str, Any]], t0: float) -> tuple[Chart, Chart]:
    xs = [p["ts"] - t0 for p in pts]
    classes = [c for c in ("event", "escalation", "label", "feature", "telemetry")
               if any(c in p.get("hub_queue", {}) or c in p.get("hub_drops", {}) for p in pts)]
    q = Chart("Hub queue depth per class", y_label="messages queued", x_range=(0.0, max(xs[-1], 1.0)))
    d = Chart("Hub drops per class (dropped + expired)", y_label="messages (cumulative)",
              x_range=(0.0, max(xs[-1], 1.0)))
    for i, c in enumerate(classes):
        q.line(xs, [p.get("hub_queue", {}).get(c) for p in pts], c, color(i))
        d.line(xs, [p.get("hub_drops", {}).get(c) for p in pts], c, color(i))
    return q, d


def swap_lanes(summary: dict[str, Any], t0: float, t_end: float) -> Lanes:
    ev = summary.get("events") or {}
    lanes = Lanes("Hot swaps: the model version each device ran", x_range=(0.0, max(t_end - t0, 1.0)), width=1230)
    by_dev: dict[str, list[tuple[float, int]]] = {}
    for e in ev.get("swaps", []):
        by_dev.setdefault(e["device"], []).append((e["ts"] - t0, int(e["version"])))
    for dev in sorted(by_dev):
        swaps = sorted(by_dev[dev])
        for i, (x, ver) in enumerate(swaps):
            end = swaps[i + 1][0] if i + 1 < len(swaps) else t_end - t0
            lanes.span(dev, x, end, f"v{ver}", color(ver - 1))
    for e in ev.get("rejections", []):
        lanes.dot(e["device"], e["ts"] - t0, f"refused v{e['offered']}: {e['reason']}", "#d62728")
    for x, label in _publications(summary, t0):
        lanes.vmark(x, label)
    return lanes


def _peak(pts: list[dict[str, Any]], key: str) -> str:
    """The largest value any class reached (drops are cumulative: the total)."""
    vals = [v for p in pts for v in (p.get(key) or {}).values()]
    return f"{max(vals):g}" if vals else "nothing (no hub status in this run)"


def _figure(fid: str, svg: str, caption: str) -> str:
    return f'<figure class="plot" id="{fid}">{svg}<figcaption>{escape(caption)}</figcaption></figure>'


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.1%}" if pct else f"{v:.3f}"
    return escape(str(v))


def _version_table(summary: dict[str, Any]) -> str:
    rows = []
    keys = {(t, v) for kind in ("edge_only", "cloud", "joint")
            for t, vers in (summary.get(f"accuracy_per_version_{kind}") or {}).items() for v in vers}
    pubs = {(e["task"], f"v{e['version']}"): e.get("accuracy") for e in (summary.get("events") or {}).get("published", [])}
    for task, ver in sorted(keys, key=lambda k: (k[0], int(k[1][1:]))):
        cells = [escape(task), escape(ver), _fmt(pubs.get((task, ver)))]
        for kind in ("edge_only", "cloud", "joint"):
            a = (summary.get(f"accuracy_per_version_{kind}") or {}).get(task, {}).get(ver)
            cells.append(f"{_fmt(a['accuracy'])} <small>({a['samples']})</small>" if a else "–")
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ("<tr><th>task</th><th>version</th><th>holdout acc. (gate)</th><th>edge-only acc. (n)</th>"
            "<th>cloud acc. (n)</th><th>joint acc. (n)</th></tr>")
    return f'<table class="versions">{head}{"".join(rows)}</table>' if rows else ""


def _rollout_section(summary: dict[str, Any]) -> str:
    """Each release's stage changes, the decisions with the field figures that made them."""
    ro = summary.get("rollout")
    if not ro:
        return ""
    t0 = float((summary.get("timeline") or {}).get("t0") or 0.0)
    rows = []
    for e in ro.get("events", []):
        f = e.get("figures") or {}
        c, k = f.get("candidate") or {}, f.get("control") or {}

        def arm(a: dict[str, Any]) -> str:
            return f"{_fmt(a.get('accuracy'))} <small>(n={a.get('labelled', 0)})</small>" if a else "–"

        bounds = f.get("bounds")
        cells = [f"{e['ts'] - t0:.0f} s", escape(e["release"]) + (" <b>forced</b>" if e.get("forced") else ""),
                 escape(e["action"]), f"v{e['from_version']} → v{e['to_version']}", escape(e["group"]), arm(c),
                 arm(k), escape(f"[{bounds[0]:+.3f}, {bounds[1]:+.3f}] vs −{f['margin']:g}") if bounds else "–",
                 escape(e["reason"])]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    head = ("<tr><th>at</th><th>release</th><th>change</th><th>versions</th><th>devices</th>"
            "<th>candidate acc.</th><th>control acc.</th><th>difference bounds</th><th>why</th></tr>")
    return (f'<h2 id="rollout">Staged rollout: {ro.get("promoted", 0)} promoted, {ro.get("rolled_back", 0)} rolled '
            f'back</h2><table class="versions rollout">{head}{"".join(rows)}</table>')


CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:12px}
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 14px}
.fig{border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:110px}
.fig b{display:block;font-size:18px} .fig span{color:#666;font-size:12px}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(612px,1fr));gap:6px}
figure.plot{margin:4px 0;border:1px solid #eee;border-radius:6px;padding:4px}
figcaption{color:#555;font-size:12px;padding:0 6px 4px}
svg .title{font-size:14px;font-weight:600} svg .tick,svg .legend,svg .marklabel,svg .spanlabel{font-size:11px}
svg .label{font-size:12px;fill:#444} svg .grid{stroke:#eee} svg .axis{stroke:#999}
svg .frame{fill:none;stroke:#bbb} svg .mark{stroke-dasharray:3 3} svg .marklabel{fill:#555}
svg .nodata{fill:#999;font-size:13px} svg .spanlabel{fill:#fff;font-weight:600}
table.versions{border-collapse:collapse;margin:8px 0 16px} .versions td,.versions th{border:1px solid #ddd;padding:3px 8px;text-align:right}
.versions th{background:#f6f6f6}
h2{font-size:16px;margin:14px 0 4px} .rollout td,.rollout th{text-align:left;vertical-align:top} .rollout td:last-child{max-width:520px}
"""


def render(summary: dict[str, Any], title: str = "Lepton run") -> str:
    """The report page for a `lepton up` summary. Raises ReportError when it has no time series."""
    t0, pts, every = _points(summary)
    w = _window(len(pts), every)
    tasks = len({t for p in pts for t in p.get("joint", {})}) or 1
    t_end = pts[-1]["ts"]
    marks = _publications(summary, t0)
    accs = []
    for kind, desc in KINDS:
        ch = accuracy_chart(pts, t0, w, kind, desc, tasks)
        for x, label in marks:
            ch.vmark(x, label)
        accs.append(_figure(f"accuracy-{kind}", ch.render(),
                            f"Share of samples labelled correctly over the last {WINDOW_S:g} s, one line per model "
                            f"version; dashed lines mark publications."))
    q, d = hub_charts(pts, t0)
    s = summary
    figures = [("duration", f"{t_end - t0:.0f} s"), ("predictions", s.get("predictions")),
               ("edge-only acc.", _fmt(s.get("accuracy_edge_only"))), ("cloud acc.", _fmt(s.get("accuracy_cloud"))),
               ("joint acc.", _fmt(s.get("accuracy_joint"))), ("escalated", _fmt(s.get("escalation_ratio"), True)),
               ("uplink / raw", _fmt(s.get("uplink_vs_raw"), True)), ("hot swaps", s.get("hot_swaps")),
               ("gate refusals", s.get("gate_refusals")), ("agent rejections", s.get("agent_model_rejections")),
               ("frames dropped", s.get("frames_dropped")), ("capture errors", s.get("capture_errors"))]
    broker = (s.get("broker") or {}).get("config", "")
    codes = s.get("exit_codes") or {}
    started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t0))
    body = [
        f"<h1>{escape(title)}</h1>",
        f'<div class="sub">started {started} · broker {escape(str(broker))} · {len(s.get("devices") or {})} devices · '
        f'exit codes {escape(", ".join(f"{k}={v}" for k, v in codes.items()) or "–")}</div>',
        '<div class="figures">' + "".join(f'<div class="fig"><b>{v if isinstance(v, str) else _fmt(v)}</b>'
                                          f'<span>{escape(k)}</span></div>' for k, v in figures) + "</div>",
        _version_table(s),
        _rollout_section(s),
        '<div class="grid2">', *accs,
        _figure("escalation", escalation_chart(pts, t0, w, marks).render(),
                "Escalated samples as a share of predictions; it falls as the edge model improves."),
        _figure("uplink", uplink_chart(pts, t0).render(),
                "What the devices sent, per topic kind (stacked), against the JPEG size of every frame (dashed)."),
        _figure("hub-queues", q.render(), "Messages waiting in the hub bridge's priority queues; "
                                          f"the deepest queue held {_peak(pts, 'hub_queue')} at once."),
        _figure("hub-drops", d.render(), "Messages the hub shed (dropped when full, or expired) per class: "
                                         f"{_peak(pts, 'hub_drops')} in all."),
        "</div>",
        _figure("swaps", swap_lanes(s, t0, t_end).render(),
                "Each bar is the version a device served from its hot swap until the next; dashed lines are "
                "publications, crosses are models a device refused."),
    ]
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f"<style>{CSS}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")


def write_report(summary: dict[str, Any], path: Path, title: str | None = None) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    run = Path(str(summary.get("run_dir") or "")).name
    path.write_text(render(summary, title or (f"Lepton run {run}" if run else "Lepton run")), encoding="utf-8")
    return path


def run(args: argparse.Namespace) -> int:
    try:
        summary = json.loads(Path(args.summary).read_text())
        out = Path(args.output) if args.output else Path(args.summary).with_suffix(".html")
        write_report(summary, out)
    except FileNotFoundError:
        print(f"lepton report: no such file: {args.summary}", file=sys.stderr)
        return 2
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        print(f"lepton report: {args.summary} is not JSON: {exc}", file=sys.stderr)
        return 2
    except ReportError as exc:
        print(f"lepton report: {args.summary}: {exc}", file=sys.stderr)
        return 2
    print(f"report written to {out}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="turn a `lepton up --summary` file into a self-contained HTML report",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("summary", help="summary JSON written by `lepton up --summary FILE`")
    p.add_argument("-o", "--output", help="HTML file to write (default: the summary's name with .html)")
    p.set_defaults(func=run)
