"""Small inline-SVG charts for the run report: lines, stacked areas, markers and lanes.

No plotting library and no script: each chart renders to one ``<svg>`` string with its axes,
ticks, legend and a ``<title>`` tooltip per series, so the report is one self-contained file
that any browser draws offline. Series elements carry ``class="series"``; a chart with no data
says so in place of the plot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from html import escape

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.floor(lo / step + 1e-9) * step
    ticks, v = [round(start, 10)], start
    while v < hi - step * 1e-9:  # the last tick is at or above hi
        v += step
        ticks.append(round(v, 10))
    return ticks


def text_width(text: str, px: float = 11.0) -> float:
    """About how wide ``text`` is in the sans-serif at ``px`` (an upper bound for digits and lower case)."""
    return 0.62 * px * len(text)


def fmt_tick(v: float) -> str:
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


@dataclass
class _Series:
    kind: str  # "line" | "area" | "points"
    xs: list[float]
    ys: list[float | None]
    label: str
    color: str
    dash: str | None = None
    base: list[float] | None = None  # stacked areas: the lower edge


@dataclass
class _Mark:
    x: float
    label: str
    color: str


@dataclass
class Chart:
    """A line/area chart. ``y_range`` fixes the y axis (accuracy: 0..1), else it fits the data."""

    title: str
    x_label: str = "time (s)"
    y_label: str = ""
    width: int = 600
    height: int = 290
    y_range: tuple[float, float] | None = None
    x_range: tuple[float, float] | None = None
    y_format: str = "{}"
    series: list[_Series] = field(default_factory=list)
    marks: list[_Mark] = field(default_factory=list)
    margin: tuple[int, int, int, int] = (58, 16, 44, 58)  # top, right, bottom, left: title and legend above

    def line(self, xs: list[float], ys: list[float | None], label: str, color: str, dash: str | None = None) -> None:
        self.series.append(_Series("line", list(xs), list(ys), label, color, dash))

    def points(self, xs: list[float], ys: list[float], label: str, color: str) -> None:
        self.series.append(_Series("points", list(xs), list(ys), label, color))

    def stacked_areas(self, xs: list[float], layers: list[tuple[str, list[float], str]]) -> None:
        """Layers (label, ys, color) stacked bottom-up."""
        base = [0.0] * len(xs)
        for label, ys, col in layers:
            top = [b + y for b, y in zip(base, ys, strict=True)]
            self.series.append(_Series("area", list(xs), list(top), label, col, base=list(base)))
            base = top

    def vmark(self, x: float, label: str, col: str = "#555") -> None:
        self.marks.append(_Mark(x, label, col))

    # ---- rendering -------------------------------------------------------------------------
    def _extent(self) -> tuple[float, float, float, float]:
        xs = [x for s in self.series for x in s.xs] + [m.x for m in self.marks]
        ys = [y for s in self.series for y in s.ys if y is not None]
        ys += [b for s in self.series if s.base for b in s.base]
        x0, x1 = self.x_range or ((min(xs), max(xs)) if xs else (0.0, 1.0))
        if self.y_range:
            y0, y1 = self.y_range
        else:
            y0, y1 = (min(0.0, min(ys)), max(ys)) if ys else (0.0, 1.0)
            if y1 <= y0:
                y1 = y0 + 1.0
            y1 = nice_ticks(y0, y1)[-1]
        if x1 <= x0:
            x1 = x0 + 1.0
        return x0, x1, y0, y1

    def render(self) -> str:
        w, h = self.width, self.height
        top, right, bottom, left = self.margin
        pw, ph = w - left - right, h - top - bottom
        x0, x1, y0, y1 = self._extent()

        def X(x: float) -> float:  # noqa: N802 (coordinate transforms read best as X/Y)
            return left + (x - x0) / (x1 - x0) * pw

        def Y(y: float) -> float:  # noqa: N802
            return top + ph - (y - y0) / (y1 - y0) * ph

        out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(self.title)}">',
               f'<text x="{left}" y="20" class="title">{escape(self.title)}</text>']
        has_data = any(any(y is not None for y in s.ys) for s in self.series)
        # axes and grid
        for t in nice_ticks(y0, y1):
            if y0 - 1e-9 <= t <= y1 + 1e-9:
                out.append(f'<line x1="{left}" x2="{left + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" class="grid"/>')
                out.append(f'<text x="{left - 6}" y="{Y(t) + 4:.1f}" class="tick" text-anchor="end">'
                           f'{escape(self.y_format.format(fmt_tick(t)))}</text>')
        for t in nice_ticks(x0, x1, 6):
            if x0 - 1e-9 <= t <= x1 + 1e-9:
                out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top + ph}" y2="{top + ph + 4}" class="axis"/>')
                out.append(f'<text x="{X(t):.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">'
                           f'{fmt_tick(t)}</text>')
        out.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>')
        out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" class="label" text-anchor="middle">'
                   f'{escape(self.x_label)}</text>')
        if self.y_label:
            out.append(f'<text transform="translate(14,{top + ph / 2:.1f}) rotate(-90)" class="label" '
                       f'text-anchor="middle">{escape(self.y_label)}</text>')
        if not has_data:
            out.append(f'<text x="{left + pw / 2:.1f}" y="{top + ph / 2:.1f}" class="nodata" '
                       'text-anchor="middle">no data in this run</text>')
        for m in self.marks:
            if x0 <= m.x <= x1:
                out.append(f'<line x1="{X(m.x):.1f}" x2="{X(m.x):.1f}" y1="{top}" y2="{top + ph}" class="mark" '
                           f'stroke="{m.color}"><title>{escape(m.label)}</title></line>')
                short = m.label.split()[0]
                half = text_width(short) / 2  # kept inside the chart: centred, unless an edge is nearer
                x = min(max(X(m.x), left + half), w - half - 2)
                out.append(f'<text x="{x:.1f}" y="{top - 3}" class="marklabel" text-anchor="middle">'
                           f'{escape(short)}</text>')
        for s in self.series:
            out.append(self._series(s, X, Y))
        out.append(self._legend(left, top, pw))
        out.append("</svg>")
        return "\n".join(out)

    def _series(self, s: _Series, X, Y) -> str:  # noqa: N803
        tip = f"<title>{escape(s.label)}</title>"
        if s.kind == "area":
            assert s.base is not None
            upper = [f"{X(x):.1f},{Y(y or 0.0):.1f}" for x, y in zip(s.xs, s.ys, strict=True)]
            lower = [f"{X(x):.1f},{Y(b):.1f}" for x, b in zip(reversed(s.xs), reversed(s.base), strict=True)]
            return (f'<polygon class="series area" points="{" ".join(upper + lower)}" fill="{s.color}" '
                    f'fill-opacity="0.55" stroke="{s.color}">{tip}</polygon>')
        if s.kind == "points":
            dots = "".join(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="3.5"/>'
                           for x, y in zip(s.xs, s.ys, strict=True) if y is not None)
            return f'<g class="series points" fill="{s.color}">{tip}{dots}</g>'
        # a line, broken where y is None (no samples in that interval)
        runs, cur = [], []
        for x, y in zip(s.xs, s.ys, strict=True):
            if y is None:
                if cur:
                    runs.append(cur)
                cur = []
            else:
                cur.append(f"{X(x):.1f},{Y(y):.1f}")
        if cur:
            runs.append(cur)
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        paths = "".join(f'<polyline points="{" ".join(r)}"/>' if len(r) > 1 else
                        f'<circle cx="{r[0].split(",")[0]}" cy="{r[0].split(",")[1]}" r="2.5" fill="{s.color}"/>'
                        for r in runs)
        return f'<g class="series line" fill="none" stroke="{s.color}" stroke-width="2"{dash}>{tip}{paths}</g>'

    def _legend(self, left: int, top: int, pw: int) -> str:
        seen: dict[str, _Series] = {}
        for s in self.series:
            seen.setdefault(s.label, s)
        items, x, y = [], left, 30
        for label, s in list(seen.items())[:12]:
            swatch = (f'<rect x="{x}" y="{y}" width="12" height="8" fill="{s.color}"/>' if s.kind != "line" else
                      f'<line x1="{x}" x2="{x + 12}" y1="{y + 4}" y2="{y + 4}" stroke="{s.color}" '
                      f'stroke-width="2"{f" stroke-dasharray={chr(34)}{s.dash}{chr(34)}" if s.dash else ""}/>')
            items.append(f'{swatch}<text x="{x + 16}" y="{y + 8}" class="legend">{escape(label)}</text>')
            x += 24 + text_width(label)
            if x > left + pw - 60:
                break
        return f'<g class="legendbox">{"".join(items)}</g>'


@dataclass
class Lanes:
    """One horizontal lane per name with coloured spans (e.g. which model version each device ran)."""

    title: str
    x_label: str = "time (s)"
    width: int = 1256
    lane_height: int = 26
    x_range: tuple[float, float] = (0.0, 1.0)
    spans: list[tuple[str, float, float, str, str]] = field(default_factory=list)  # lane, x0, x1, label, color
    dots: list[tuple[str, float, str, str]] = field(default_factory=list)  # lane, x, label, color
    marks: list[_Mark] = field(default_factory=list)

    def span(self, lane: str, x0: float, x1: float, label: str, col: str) -> None:
        self.spans.append((lane, x0, x1, label, col))

    def dot(self, lane: str, x: float, label: str, col: str) -> None:
        self.dots.append((lane, x, label, col))

    def vmark(self, x: float, label: str, col: str = "#555") -> None:
        self.marks.append(_Mark(x, label, col))

    def render(self) -> str:
        lanes: list[str] = []
        for lane, *_ in [*self.spans, *self.dots]:
            if lane not in lanes:
                lanes.append(lane)
        top, left, right, bottom = 34, 110, 16, 40
        ph = max(1, len(lanes)) * self.lane_height
        w, h = self.width, top + ph + bottom
        pw = w - left - right
        x0, x1 = self.x_range
        x1 = x1 if x1 > x0 else x0 + 1.0

        def X(x: float) -> float:  # noqa: N802
            return left + (min(max(x, x0), x1) - x0) / (x1 - x0) * pw

        out = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
               f'viewBox="0 0 {w} {h}" role="img" aria-label="{escape(self.title)}">',
               f'<text x="{left}" y="20" class="title">{escape(self.title)}</text>',
               f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" class="frame"/>']
        for t in nice_ticks(x0, x1, 10):
            if x0 <= t <= x1:
                out.append(f'<line x1="{X(t):.1f}" x2="{X(t):.1f}" y1="{top}" y2="{top + ph}" class="grid"/>')
                out.append(f'<text x="{X(t):.1f}" y="{top + ph + 16}" class="tick" text-anchor="middle">'
                           f'{fmt_tick(t)}</text>')
        out.append(f'<text x="{left + pw / 2:.1f}" y="{h - 6}" class="label" text-anchor="middle">'
                   f'{escape(self.x_label)}</text>')
        if not lanes:
            out.append(f'<text x="{left + pw / 2:.1f}" y="{top + 18}" class="nodata" text-anchor="middle">'
                       'no data in this run</text>')
        row = {lane: i for i, lane in enumerate(lanes)}
        for lane, i in row.items():
            out.append(f'<text x="{left - 8}" y="{top + i * self.lane_height + 17}" class="tick" '
                       f'text-anchor="end">{escape(lane)}</text>')
        for m in self.marks:
            # Right of its line, unless that would run past the edge: then left of it, ending there.
            right = X(m.x) + 3 + text_width(m.label) <= w - 2
            label = (f'<text x="{X(m.x) + 3:.1f}" y="{top - 6}" class="marklabel">' if right else
                     f'<text x="{X(m.x) - 3:.1f}" y="{top - 6}" class="marklabel" text-anchor="end">')
            out.append(f'<line x1="{X(m.x):.1f}" x2="{X(m.x):.1f}" y1="{top - 4}" y2="{top + ph}" class="mark" '
                       f'stroke="{m.color}"><title>{escape(m.label)}</title></line>'
                       f'{label}{escape(m.label)}</text>')
        for lane, a, b, label, col in self.spans:
            y = top + row[lane] * self.lane_height + 4
            wid = max(1.5, X(b) - X(a))
            out.append(f'<g class="series span"><title>{escape(lane)}: {escape(label)} from {a:.1f} s to {b:.1f} s'
                       f'</title><rect x="{X(a):.1f}" y="{y}" width="{wid:.1f}" height="{self.lane_height - 8}" '
                       f'fill="{col}" fill-opacity="0.8"/>'
                       + (f'<text x="{X(a) + 4:.1f}" y="{y + 13}" class="spanlabel">{escape(label)}</text>'
                          if wid > 8 * len(label) else "") + "</g>")
        for lane, x, label, col in self.dots:
            y = top + row[lane] * self.lane_height + self.lane_height / 2
            out.append(f'<g class="series dot"><title>{escape(lane)}: {escape(label)} at {x:.1f} s</title>'
                       f'<path d="M{X(x) - 5:.1f},{y - 5:.1f} l10,10 m-10,0 l10,-10" stroke="{col}" '
                       f'stroke-width="2.5"/></g>')
        out.append("</svg>")
        return "\n".join(out)
