"""`lepton report SUMMARY.json -o run.html` (and `lepton up --report run.html`): one HTML file to look at.

The page is self-contained: inline CSS and inline SVG (lepton_views/svgplot.py), no script, no
font, no CDN, nothing fetched. Its plots come from the summary's ``timeline`` (cumulative
samples of the fleet view that `lepton up` takes every ``--sample-every`` seconds) and
``events`` (hot swaps, refusals, publications):

- per model version its holdout accuracy (the worker's score before publishing) beside its field
  accuracy (what the devices did, against ground truth), with a paragraph on the difference, and
  the scoreboard's targets with their verdicts, whichever targets the summary carries;
- accuracy over time per model version: edge-only, cloud answers, joint (edge + cloud), all on 0..1,
  each point over the version's last samples (dotted while it has few); a version without a line
  is named under the chart with the reason (deferred to the edge, no escalations, too few samples);
- escalation ratio over time;
- uplink bytes by topic, stacked, against the raw frames' JPEG size;
- hub queue depth and drops (dropped + expired) per priority class;
- the hot-swap timeline: which version each device ran when, publications and refusals;
- staged rollouts (when the summary has them): every stage change with the figures behind it.

The escalation ratio is over a sliding window (``WINDOW_S``) of the cumulative counts, so a point
says how the fleet did in the last few seconds, not since the start.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from html import escape
from pathlib import Path
from typing import Any

from lepton_views.svgplot import Chart, Lanes, color

WINDOW_S = 10.0  # the escalation ratio over the last this-many seconds
MIN_SAMPLES = 5  # fewer predictions than this in a window leave a gap rather than a noisy point
# Accuracy per model version: over that version's last ACC_WINDOW samples (cloud answers, rarer:
# CLOUD_WINDOW), drawn dotted while it has fewer, and not at all below ACC_MIN; a version's line
# ends with its last sample, so a version fading out leaves no tail of a handful of samples.
ACC_WINDOW, CLOUD_WINDOW, ACC_MIN = 100, 30, 10
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
    """Sample points in WINDOW_S (the escalation chart's window)."""
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


def version_accuracy(correct: list[float], total: list[float], k: int, min_n: int = ACC_MIN
                     ) -> tuple[list[float | None], list[float | None]]:
    """(solid, dotted) accuracy of one version at each sample point, from cumulative counts: over
    about its last ``k`` samples (the window starts at the latest point at least ``k`` back), dotted
    while the version has fewer than ``k`` samples in all, None below ``min_n`` and after its last
    sample. The dotted series includes the first solid point, so the two join up."""
    m = len(total)
    last = max((i for i in range(m) if total[i] > (total[i - 1] if i else 0)), default=-1)
    solid: list[float | None] = [None] * m
    dotted: list[float | None] = [None] * m
    for i in range(last + 1):
        if total[i] < min_n:
            continue
        j = next((j for j in range(i - 1, -1, -1) if total[i] - total[j] >= k), None)
        c0, n0 = (correct[j], total[j]) if j is not None else (0.0, 0.0)
        acc = (correct[i] - c0) / (total[i] - n0)
        if total[i] >= k:
            solid[i] = acc
            if i and solid[i - 1] is None and dotted[i - 1] is not None:
                dotted[i] = acc
        else:
            dotted[i] = acc
    return solid, dotted


def _versions(pts: list[dict[str, Any]], kind: str) -> list[tuple[str, str]]:
    keys = {(task, ver) for p in pts for task, vers in p.get(kind, {}).items() for ver in vers}
    return sorted(keys, key=lambda k: (k[0], int(k[1])))


def _board_versions(summary: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(b["task"], str(v["version"])): v for b in summary.get("scoreboard") or [] for v in b.get("versions", [])}


def why_no_line(kind: str, n: int, version: dict[str, Any] | None) -> str:
    """Why a version has no line of its own in an accuracy chart."""
    if kind == "cloud":
        if not n and version and version.get("cloud_deferred"):
            return "no cloud answers: its replies deferred to the edge (the cloud was no better there)"
        if not n and version and not version.get("field_escalation_ratio"):
            return "no escalations"
        if not n:
            return "no cloud answer came in time"
    if not n:
        return "no scored samples"
    return f"{n} sample{'s' if n > 1 else ''} only (a point needs {ACC_MIN})"


def accuracy_chart(pts: list[dict[str, Any]], t0: float, kind: str, title: str, tasks: int,
                   summary: dict[str, Any] | None = None) -> tuple[Chart, list[str]]:
    """The chart, and a note per version drawn without a line (and why)."""
    xs = [p["ts"] - t0 for p in pts]
    k = CLOUD_WINDOW if kind == "cloud" else ACC_WINDOW
    board = _board_versions(summary or {})
    published = {(e.get("task"), str(e.get("version"))) for e in ((summary or {}).get("events") or {}).get("published", [])}
    ch = Chart(f"Accuracy, {title}", y_label=f"accuracy (last {k} samples)", y_range=(0.0, 1.0),
               x_range=(0.0, max(xs[-1], 1.0)))
    notes, seen = [], set()
    for i, (task, ver) in enumerate(_versions(pts, kind)):
        seen.add((task, ver))
        c = [float(p.get(kind, {}).get(task, {}).get(ver, [0, 0])[0]) for p in pts]
        n = [float(p.get(kind, {}).get(task, {}).get(ver, [0, 0])[1]) for p in pts]
        label = f"{task} v{ver}" if tasks > 1 else f"v{ver}"
        col = color(int(ver) - 1 + 3 * i * (tasks > 1))
        solid, dotted = version_accuracy(c, n, k)
        if any(y is not None for y in solid):
            ch.line(xs, solid, label, col)
        if any(y is not None for y in dotted):
            ch.line(xs, dotted, label, col, dash="2 3")  # one legend entry: the first series of a label
        if all(y is None for y in solid + dotted):
            notes.append(f"{label}: {why_no_line(kind, int(n[-1]), board.get((task, ver)))}")
    for task, ver in sorted(published - seen, key=lambda tv: (str(tv[0]), int(tv[1]))):
        label = f"{task} v{ver}" if tasks > 1 else f"v{ver}"
        notes.append(f"{label}: {why_no_line(kind, 0, board.get((task, ver)))}")
    return ch, notes


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


def _figure(fid: str, svg: str, caption: str, notes: list[str] | None = None) -> str:
    more = "".join(f'<br><span class="note">{escape(n)}</span>' for n in notes or [])
    return f'<figure class="plot" id="{fid}">{svg}<figcaption>{escape(caption)}{more}</figcaption></figure>'


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
    keys |= set(pubs)
    board = {(t, f"v{v}"): row for (t, v), row in _board_versions(summary).items()}
    for task, ver in sorted(keys, key=lambda k: (k[0], int(k[1][1:]))):
        b = board.get((task, ver)) or {}
        cells = [escape(task), escape(ver), _fmt(pubs.get((task, ver), b.get("holdout_edge_acc"))),
                 _fmt(b.get("holdout_cloud_acc")), _fmt(b.get("holdout_joint_acc"))]
        for kind in ("edge_only", "cloud", "joint"):
            a = (summary.get(f"accuracy_per_version_{kind}") or {}).get(task, {}).get(ver)
            cells.append(f"{_fmt(a['accuracy'])} <small>({a['samples']})</small>" if a else "–")
        cells.append(_fmt(b.get("field_escalation_ratio"), True))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = ('<tr><th rowspan="2">task</th><th rowspan="2">version</th>'
            '<th colspan="3">holdout accuracy (the worker, before publishing)</th>'
            '<th colspan="4">field (what the devices did, against ground truth)</th></tr>'
            "<tr><th>edge</th><th>cloud</th><th>joint</th><th>edge-only acc. (n)</th><th>cloud answers acc. (n)</th>"
            "<th>joint acc. (n)</th><th>escalated</th></tr>")
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


HOLDOUT_VS_FIELD = (
    "<b>Holdout</b> is the worker's own score of a version, before it publishes it: held-out labelled samples of "
    "the task's dataset that no version trains on, the same for every version, so versions compare fairly (the gate "
    "publishes a candidate only if it beats the deployed one there). <b>Field</b> is what the devices did with it, "
    "scored afterwards against each sample's ground truth: other samples (the stream, with its drift), whichever "
    "ones each version happened to meet, and the cloud's answers only where they came in time. The two differ: "
    "holdout says which model is better, field what the fleet got.")


def _targets(summary: dict[str, Any]) -> str:
    """Each scoreboard target with its verdict, as the summary has them: whatever targets apply to a
    task (lepton_views/scoreboard.py decides), described by the target's own text where it has one."""
    from lepton_views.scoreboard import TARGETS, describe
    rows = []
    for board in summary.get("scoreboard") or []:
        for key, t in (board.get("targets") or {}).items():
            t = t if isinstance(t, dict) else {"value": t}
            what = t.get("target") or t.get("description") or (describe(key, t.get("threshold")) if key in TARGETS
                                                                 else key)
            met = t.get("met")
            verdict = {True: '<td class="met">met</td>', False: '<td class="missed">missed</td>'}.get(
                met, '<td class="na">–</td>')
            extra = "; ".join(f"{k}: {v}" for k, v in t.items() if k not in ("met", "value", "target", "description"))
            value = escape(str(t.get("value", ""))) + (f" <small>({escape(extra)})</small>" if extra else "")
            rows.append(f"<tr><td>{escape(str(board.get('task', '')))}</td><td class=\"what\">{escape(str(what))}</td>"
                        f"{verdict}<td class=\"what\">{value}</td></tr>")
    if not rows:
        return ""
    return ('<table class="versions targets"><tr><th>task</th><th>target</th><th>verdict</th><th>measured</th></tr>'
            + "".join(rows) + "</table>")


SVG_CSS = """\
svg .title{font-size:14px;font-weight:600} svg .tick,svg .legend,svg .marklabel,svg .spanlabel{font-size:11px}
svg .label{font-size:12px;fill:#444} svg .grid{stroke:#eee} svg .axis{stroke:#999}
svg .frame{fill:none;stroke:#bbb} svg .mark{stroke-dasharray:3 3} svg .marklabel{fill:#555}
svg .nodata{fill:#999;font-size:13px} svg .spanlabel{fill:#fff;font-weight:600}"""

CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:20px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 4px} .sub{color:#666;margin-bottom:12px}
.figures{display:flex;flex-wrap:wrap;gap:8px;margin:10px 0 14px}
.fig{border:1px solid #ddd;border-radius:6px;padding:6px 10px;min-width:110px}
.fig b{display:block;font-size:18px} .fig span{color:#666;font-size:12px}
.grid2{display:grid;grid-template-columns:repeat(auto-fill,minmax(612px,1fr));gap:6px}
figure.plot{margin:4px 0;border:1px solid #eee;border-radius:6px;padding:4px}
figcaption{color:#555;font-size:12px;padding:0 6px 4px}
""" + SVG_CSS + """
table.versions{border-collapse:collapse;margin:8px 0 16px} .versions td,.versions th{border:1px solid #ddd;padding:3px 8px;text-align:right}
.versions th{background:#f6f6f6} .versions td.what{text-align:left} .targets td.met{color:#1a7f37;font-weight:600}
.targets td.missed{color:#c62828;font-weight:600} .targets td.na{color:#888} .targets th{text-align:left} p.explain{max-width:1100px;color:#333}
figcaption .note{color:#8a5a00}
h2{font-size:16px;margin:14px 0 4px} .rollout td,.rollout th{text-align:left;vertical-align:top} .rollout td:last-child{max-width:520px}
"""


def standalone_svg(svg: str) -> str:
    """A chart served on its own (the console's <img>), which cannot see a page's CSS: its styles inside."""
    head, sep, rest = svg.partition(">")
    return f"{head}{sep}<style>text{{font-family:system-ui,sans-serif}}\n{SVG_CSS}</style>{rest}"


def render(summary: dict[str, Any], title: str = "Lepton run") -> str:
    """The report page for a `lepton up` summary. Raises ReportError when it has no time series."""
    t0, pts, every = _points(summary)
    w = _window(len(pts), every)
    tasks = len({t for p in pts for t in p.get("joint", {})}) or 1
    t_end = pts[-1]["ts"]
    marks = _publications(summary, t0)
    accs = []
    for kind, desc in KINDS:
        ch, notes = accuracy_chart(pts, t0, kind, desc, tasks, summary)
        for x, label in marks:
            ch.vmark(x, label)
        k = CLOUD_WINDOW if kind == "cloud" else ACC_WINDOW
        caption = (f"Share of samples labelled correctly, one line per model version, over its last {k} samples "
                   f"(dotted while it has fewer; none below {ACC_MIN}); dashed lines mark publications.")
        accs.append(_figure(f"accuracy-{kind}", ch.render(), caption, notes))
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
        f'<p class="explain">{HOLDOUT_VS_FIELD}</p>',
        _targets(s),
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
