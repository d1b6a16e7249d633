"""The live fleet table of `lepton monitor` and `lepton up`, sized to the terminal it is drawn on.

At 80 columns the columns that say whether the fleet works (device, state, model, joint
accuracy, escalations, predictions, uplink against raw) keep their full values under short
headers, and the rest (task, outbox, fps, capture errors, reconnects) are left out, most
dispensable first; a wider terminal gets them back, then the long headers. Columns that show
trouble (capture errors, reconnects) go last when any device has some. Below the table, one short
line each: per task the deployed model and its holdout figures, what the worker is doing (training
v1 from the seed set, a retrain, serving), the hub's queues and drops, and the fleet's accuracies.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lepton_views.fleetview import DeviceRow, FleetStats


@dataclass(frozen=True)
class Column:
    key: str
    header: str
    short: str
    value: Callable[[DeviceRow], str]
    drop: int  # dropped in ascending order when the terminal is too narrow; 99: never


def _acc(r: DeviceRow) -> str:
    return f"{sum(r.recent) / len(r.recent):.3f}" if r.recent else "-"


COLUMNS = (
    Column("device", "device", "device", lambda r: r.device, 99),
    Column("task", "task", "task", lambda r: r.task if r.task != "?" else "-", 5),
    Column("state", "state", "state", lambda r: r.state if r.state != "?" else "-", 99),
    Column("model", "model", "model", lambda r: f"v{r.model}" if r.model else "none", 99),
    Column("preds", "preds", "preds", lambda r: str(r.preds), 7),
    Column("acc", "joint acc (last 200)", "joint acc", _acc, 99),
    Column("esc", "escalated", "escal.", lambda r: f"{r.escalated / r.preds:.1%}" if r.preds else "-", 99),
    Column("uplink", "uplink/raw", "up/raw", lambda r: f"{r.uplink / r.raw:.1%}" if r.raw else "-", 6),
    Column("outbox", "outbox", "outbox", lambda r: str(r.outbox), 3),
    Column("fps", "fps", "fps", lambda r: f"{r.fps:.1f}", 1),
    Column("caperr", "capture err", "cap.err", lambda r: str(r.capture_errors), 2),
    Column("reconn", "reconnects", "reconn.", lambda r: str(r.capture_reconnects), 0),
)
TROUBLE = {"caperr", "reconn"}  # kept longest when any device shows some


def _fmt(v: float | None, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.3f}"


def _drop_order(rows: list[DeviceRow]) -> list[Column]:
    trouble = any(r.capture_errors or r.capture_reconnects for r in rows)
    return sorted((c for c in COLUMNS if c.drop < 99),
                  key=lambda c: c.drop + (10 if trouble and c.key in TROUBLE else 0))


def build_table(rows: list[DeviceRow], columns: list[Column], short: bool, title: str, title_style: str | None):
    from rich.table import Table

    t = Table(title=title, title_style=title_style, expand=False)
    for c in columns:
        t.add_column(c.short if short else c.header, no_wrap=True, overflow="ellipsis",
                     justify="left" if c.key in ("device", "task", "state") else "right")
    for r in rows:
        t.add_row(*(c.value(r) for c in columns))
    return t


def fitted_table(rows: list[DeviceRow], width: int, title: str, title_style: str | None = None, console=None):
    """The widest variant whose natural width fits ``width``: every column with long headers, then
    short headers, then columns left out in their drop order (the essential ones never)."""
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console(width=width)
    options = console.options.update_width(10_000)  # measured unclamped: its natural width
    columns = list(COLUMNS)
    order = _drop_order(rows)
    table = None
    for short in (False, True):
        table = build_table(rows, columns, short, title, title_style)
        if Measurement.get(console, options, table).maximum <= width:
            return table
    while order:
        gone = order.pop(0)
        columns = [c for c in columns if c is not gone]
        table = build_table(rows, columns, True, title, title_style)
        if Measurement.get(console, options, table).maximum <= width:
            return table
    return table


# ---- the lines below the table --------------------------------------------------------------
def model_line(task: str, version: int, metrics: dict[str, Any]) -> str:
    """One line per task: the deployed version and its holdout figures (not the raw metrics dict)."""
    accs = " ".join(f"{name} {metrics[key]:.3f}" for key, name in (("accuracy", "edge"), ("cloud_acc", "cloud"),
                                                                  ("joint_acc", "joint")) if key in metrics)
    line = f"{task} v{version}"
    if accs:
        n = metrics.get("holdout_n")
        line += f" · holdout {accs}" + (f" (n={int(n)})" if n else "")
    if "escalated" in metrics:
        line += f" · escalates {metrics['escalated']:.0%}"
    return line


def worker_activity(w: dict[str, Any] | None, tasks: list[str] | None = None) -> str:
    """What a worker is doing, from its retained status (cloud/{worker}/status, as FleetStats.summary()
    keeps it: state, counters, gauges). Its gauges carry ``{task}.version`` once a task has a model,
    and its counters the retrain triggers fired and the candidates trained (cloud_worker/service.py)."""
    short = worker_short(w)
    if short == "starting":
        return "starting (no status yet)"
    if short == "training_v1":
        return (f"training {', '.join(tasks)} v1" if tasks else "training v1") + " from the seed set"
    if short == "retraining":
        return "training a candidate; the gate decides whether to publish it"
    if short != "serving":
        return short
    assert w is not None
    g = w.get("gauges") or {}
    versions = {k.rsplit(".", 1)[0]: int(v) for k, v in g.items() if k.endswith(".version")}
    labels = sum(int(v) for k, v in g.items() if k.endswith(".new_labels"))
    served = ", ".join(f"{t} v{v}" for t, v in sorted(versions.items()))
    return f"serving {served}, {labels} labels since the last retrain"


def worker_short(w: dict[str, Any] | None) -> str:
    """The same, one word for a greppable status line: starting | training_v1 | retraining | serving | offline."""
    if w is None:
        return "starting"
    if w.get("state") != "online":
        return str(w.get("state"))
    if not any(k.endswith(".version") for k in w.get("gauges") or {}):
        return "training_v1"
    c = w.get("counters") or {}
    fired = sum(v for k, v in c.items() if k.startswith("learn.trigger."))
    return "retraining" if fired > c.get("learn.candidates", 0) else "serving"


def caption_lines(s: dict[str, Any]) -> list[str]:
    """The lines under the table, from FleetStats.summary(): each fits 80 columns in a normal run."""
    tasks = sorted({d["task"] for d in s["devices"].values() if d["task"] != "?"})
    out = [model_line(t, m["version"], m["metrics"]) for t, m in sorted(s["models"].items())]
    workers = s["workers"]
    if not s["models"]:
        who = "; ".join(f"{w} is {worker_activity(v, tasks or None)}" for w, v in workers.items())
        out.append(f"no model yet: {who or 'the worker is starting'}; agents start on v1")
    for w, v in sorted(workers.items()):
        if s["models"]:
            refused = int((v.get("counters") or {}).get("learn.rejected", 0))
            out.append(f"{w}: {worker_activity(v)}" + (f"; gate refused {refused}" if refused else ""))
    hub = s["hub"]
    if hub:
        g = hub["gauges"]
        queued = {k.split(".", 1)[1]: int(v) for k, v in g.items() if k.startswith("queue.") and v}
        drops = sum(v for k, v in hub["counters"].items() if k.startswith(("dropped.", "expired.")))
        q = ", ".join(f"{k} {v}" for k, v in queued.items()) or "nothing"
        out.append(f"hub: queued {q}; dropped or expired {drops}")
    else:
        out.append("hub: no status yet")
    line = (f"fleet acc: edge-only {_fmt(s['accuracy_edge_only'])} · joint {_fmt(s['accuracy_joint'])} · "
            f"cloud answers {_fmt(s['accuracy_cloud'])}")
    if s["agent_model_rejections"]:
        line += f"; agents rejected {s['agent_model_rejections']} model(s)"
    return [*out, line]


class FleetView:
    """A rich renderable: the fitted table and its lines, laid out for whatever width it is drawn at
    (so the live view follows a resized terminal)."""

    def __init__(self, stats: FleetStats, state: Any = None, connection_text: Callable[[Any], str] | None = None):
        self.stats = stats
        self.state = state
        self.connection_text = connection_text

    def __rich_console__(self, console, options):
        from rich.text import Text

        s = self.stats.summary()
        lost = self.state is not None and not self.state.connected
        title = f"Lepton fleet — {time.strftime('%H:%M:%S')}"
        if lost and self.connection_text is not None:
            title += f" — broker {self.connection_text(self.state)}"
        yield fitted_table(self.stats.rows(), options.max_width, title, "bold red" if lost else None, console)
        for line in caption_lines(s):
            yield Text(line, overflow="fold")
        rollout = self.stats.rollout_text()[0]
        for line in rollout.splitlines() if rollout else ():
            yield Text("rollout: " + line, overflow="fold")
