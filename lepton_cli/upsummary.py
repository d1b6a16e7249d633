"""What `lepton up` prints for a person: where things are at the start, and a few lines at the end.

The whole summary (every counter, per device, the time series) goes to a file, the run directory's
``summary.json`` (and ``--summary FILE``); the terminal gets the headline figures, the scoreboard
and the commands that open the rest, named so they work from where the user is
(lepton_cli/hints.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lepton_cli.hints import command


def shown(path: Path | str) -> str:
    """A path as short as it is unambiguous from here: relative under the working directory."""
    p = Path(path).absolute()
    try:
        return str(p.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _n(v: Any) -> str:
    return f"{v:,}" if isinstance(v, int) else "-"


def _acc(v: float | None) -> str:
    return "-" if v is None else f"{v:.3f}"


def _kb(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def short_summary(s: dict[str, Any], seconds: float) -> list[str]:
    """The run in a few lines: models, predictions, accuracy, uplink, anything lost, exit codes."""
    codes = s.get("exit_codes") or {}
    bad = {k: v for k, v in codes.items() if v not in (0, None)}
    exits = "every process exited 0" if not bad else "exit codes " + ", ".join(f"{k}={v}" for k, v in bad.items())
    out = [f"lepton up: ran {seconds:.0f} s; {exits}"]
    published = (s.get("events") or {}).get("published") or []
    devices = s.get("devices") or {}
    for task, m in sorted((s.get("models") or {}).items()):
        versions = sorted({e["version"] for e in published if e.get("task") == task})
        on = sum(1 for d in devices.values() if d.get("task") == task and d.get("model") == m["version"])
        of = sum(1 for d in devices.values() if d.get("task") == task)
        made = f"v{versions[0]} to v{versions[-1]} published" if len(versions) > 1 else f"v{m['version']} published"
        out.append(f"  {task}: {made}; {on} of {of} agents on v{m['version']}")
    if s.get("models"):
        out.append(f"  {s.get('hot_swaps', 0)} hot swaps; the gate refused {s.get('gate_refusals', 0)} candidate(s), "
                   f"agents refused {s.get('agent_model_rejections', 0)} model(s)")
    else:
        out.append("  no model was published (the worker trains v1 first: run longer, or see worker.log)")
    esc = s.get("escalation_ratio")
    out.append(f"  {_n(s.get('predictions'))} predictions, {'-' if esc is None else f'{esc:.1%}'} escalated, "
               f"{_n(s.get('cloud_answers'))} answered by the cloud")
    out.append(f"  accuracy on ground truth: edge-only {_acc(s.get('accuracy_edge_only'))} · joint "
               f"{_acc(s.get('accuracy_joint'))} · cloud answers {_acc(s.get('accuracy_cloud'))}")
    up, raw = s.get("uplink_bytes") or 0, s.get("raw_frame_bytes") or 0
    if raw:
        out.append(uplink_line(up, raw, {b.get("kind") for b in s.get("scoreboard") or []}))
    hub = s.get("hub") or {}
    drops = sum(v for k, v in (hub.get("counters") or {}).items() if k.startswith(("dropped.", "expired.")))
    gaps = sum((s.get("qos1_seq_gaps") or {}).values())
    out.append(f"  lost: {s.get('frames_dropped', 0)} frames dropped, {s.get('capture_errors', 0)} capture errors, "
               f"{gaps} QoS 1 gaps, {s.get('qos1_duplicates', 0)} duplicates, {drops} hub drops or expiries")
    out += rollout_lines(s.get("rollout"))
    return out


def uplink_line(up: int, raw: int, kinds: set[str | None]) -> str:
    """Bytes sent against the raw samples, named by what the raw side is: a frame's size as JPEG (what
    the agent's meter counts), a window's as captured. Windows travel as float16 tensors, not JPEG."""
    pct = f"{up / raw:.1%}"
    if kinds == {"image"}:
        return f"  uplink {_kb(up)}: {pct} of the raw frames as JPEG ({_kb(raw)})"
    if kinds == {"window"}:
        return f"  uplink {_kb(up)} (windows as float16 tensors): {pct} of the raw windows as captured ({_kb(raw)})"
    return f"  uplink {_kb(up)}: {pct} of the raw samples ({_kb(raw)}: frames as JPEG, windows as captured)"


def rollout_lines(ro: dict[str, Any] | None) -> list[str]:
    """A staged rollout's outcome: each release's end and, for a rollback, the figures that decided it."""
    if not ro:
        return []
    out = [f"  rollout: {ro.get('promoted', 0)} release(s) promoted, {ro.get('rolled_back', 0)} rolled back"]
    for e in ro.get("events") or []:
        if e.get("action") == "rollback":
            out.append(f"  rolled back {e['release']} (v{e['from_version']} on {e['group']}): {e['reason']}"[:240])
    return out


def where(run_dir: Path, summary: Path, report: Path | None) -> list[str]:
    """Where the rest is, as commands that run from here."""
    lepton = command("lepton")
    out = [f"run dir {shown(run_dir)}:",
           f"  summary  {shown(summary)} (all figures and the time series; "
           f"`{lepton} report {shown(summary)} -o run.html` plots it)"]
    if report is not None:
        out.append(f"  report   {shown(report)}")
    out += [f"  models   {command('lepton-worker')} models list --config {shown(run_dir / 'worker.toml')} "
            f"(registry {shown(run_dir / 'registry')})",
            f"  logs     {shown(run_dir)}/*.log"]
    return out


def start_lines(run_dir: Path, public_key: Path) -> list[str]:
    """After the watch hint: the key hand-started agents need, and what the first seconds look like."""
    return [f"  agents you start by hand verify models with {shown(public_key)} (their config's model.public_key)",
            "  the worker first trains v1 from the seed set (usually 10-40 s); the agents start once it is published"]
