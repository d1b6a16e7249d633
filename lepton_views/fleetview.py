"""Fleet statistics from the topic tree: the pure core behind `lepton monitor`, `lepton up` and its report.

:class:`FleetStats` is fed decoded messages (shared.protocol.wire) and keeps, per task and device:
model version, rolling accuracy against ground truth (when the sample's ``ref`` points into a
packaged dataset), escalation ratio, uplink vs raw bytes, capture errors and reconnects, plus
hub queue depths and drops. Edge-only accuracy comes from the feature batches (the edge model's
own argmax per sample); joint accuracy from the final predictions (cloud answer when it came in
time); cloud accuracy from the predictions the cloud answered. ``point()`` is one cumulative
sample of all of it, which `lepton up` records over time for its report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lepton_tasks import TaskSpecError, load_task
from lepton_views import scoreboard
from lepton_views.rollout_view import RolloutView
from shared.protocol import schemas
from shared.protocol.containers import FeatureBatch
from shared.protocol.dedup import SeqSet
from shared.protocol.topics import Kind
from shared.protocol.wire import Decoded

log = logging.getLogger(__name__)

WINDOW = 200
MAX_EVENTS = 10_000  # swaps, rejections and publications kept for the timeline
# Device counters (telemetry) that mean capture is failing, and its recoveries (edge_agent/sources.py).
CAPTURE_ERROR_COUNTERS = ("capture.errors", "capture.open_failed", "capture.lost", "capture.unreadable",
                          "capture.unavailable")
CAPTURE_RECONNECTS = "capture.reconnects"
# Hub classes in priority order (hub_bridge/classes.py); the hub's counters are "<what>.<class>".
HUB_CLASSES = ("event", "escalation", "label", "feature", "telemetry")


def truth_for(ref: str) -> int | None:
    t = _truth(ref)
    return t[0] if t is not None else None


def _truth(ref: str) -> tuple[int, bool] | None:
    """(true class, in the task's drift phase) for a replayed sample's ``task:index`` ref."""
    task, sep, idx = ref.partition(":")
    if not sep or not idx.isdigit():
        return None
    if task in _NO_TRUTH:
        return None
    try:
        d = load_task(task).dataset()
    except TaskSpecError:  # not a task this process can load: no ground truth for it
        _NO_TRUTH.add(task)
        return None
    except (ImportError, OSError, ValueError) as exc:
        # Its data needs a package this install lacks (or is unreadable): the fleet view goes on
        # without field accuracy for it, and says so once instead of failing every message.
        _NO_TRUTH.add(task)
        log.warning("no ground truth for task %s here (field accuracy not shown): %s: %s", task,
                    type(exc).__name__, exc)
        return None
    i = int(idx)
    if not 0 <= i < len(d.y):
        return None
    return int(d.y[i]), i in _drift_set(task)


_DRIFT: dict[str, frozenset[int]] = {}
_NO_TRUTH: set[str] = set()  # tasks whose dataset cannot be loaded in this process


def _drift_set(task: str) -> frozenset[int]:
    s = _DRIFT.get(task)
    if s is None:
        d = load_task(task).dataset()
        s = _DRIFT[task] = frozenset(int(i) for i in d.stream[d.drift_at:]) if d.drift_at is not None else frozenset()
    return s


@dataclass
class DeviceRow:
    device: str
    task: str = "?"
    state: str = "?"
    model: int = 0
    preds: int = 0
    escalated: int = 0
    cloud_answers: int = 0
    recent: deque = field(default_factory=lambda: deque(maxlen=WINDOW))  # 1/0 correct, joint
    uplink: int = 0
    raw: int = 0
    frames: int = 0
    outbox: int = 0
    fps: float = 0.0
    dropped_frames: int = 0
    swaps: int = 0
    rejected_models: int = 0
    counters: dict[str, int] = field(default_factory=dict)

    @property
    def capture_errors(self) -> int:
        return sum(self.counters.get(k, 0) for k in CAPTURE_ERROR_COUNTERS)

    @property
    def capture_reconnects(self) -> int:
        return self.counters.get(CAPTURE_RECONNECTS, 0)


def _acc(cell: list[int] | None) -> float | None:
    return round(cell[0] / cell[1], 4) if cell and cell[1] else None


def metric_value(name: str, value: float) -> float | int:
    """Counts in manifest metrics (holdout_n, train_rows) travel as floats; give them back as ints."""
    if name.endswith(("_n", "_rows", "_count")) and float(value).is_integer():
        return int(value)
    return value


class FleetStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.devices: dict[str, DeviceRow] = {}
        # (task, model_version) -> [correct, total] for joint and edge-only decisions
        self.joint: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.edge: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.cloud: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])  # cloud answers only
        # The scoreboard: per (task, version) the predictions and how many escalated; the edge model's
        # accuracy on the escalated ones (what the cloud competes with); per task a time line of
        # (time, correct, in the drift phase) and of labels published, for drift recovery.
        self.preds_by_version: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self.escalated_edge: dict[tuple[str, int], list[int]] = defaultdict(lambda: [0, 0])
        self._escalated: dict[tuple[str, int], str] = {}  # (device, sample) -> task, while its edge label is due
        self.timeline: dict[str, deque] = defaultdict(lambda: deque(maxlen=200_000))
        self.label_times: dict[str, deque] = defaultdict(lambda: deque(maxlen=200_000))
        self.version_metrics: dict[tuple[str, int], dict[str, float]] = {}
        # (unix time, device, version) of every hot swap; (time, device, offered, reason) of refusals;
        # (time the version was made, task, version, holdout accuracy) of every published model.
        self.swap_events: deque[tuple[float, str, int]] = deque(maxlen=MAX_EVENTS)
        self.reject_events: deque[tuple[float, str, int, str]] = deque(maxlen=MAX_EVENTS)
        self.published: dict[tuple[str, int], tuple[float, float | None]] = {}
        self._edge_label: dict[tuple[str, int], tuple[int, int]] = {}  # (device, sample) -> (label, version)
        self._pred_truth: dict[tuple[str, int], int] = {}
        self.manifests: dict[str, schemas.Manifest] = {}
        self.hub: schemas.ServiceStatus | None = None
        self.workers: dict[str, schemas.ServiceStatus] = {}
        self.rollout = RolloutView()  # staged rollouts: releases and their stage changes
        # QoS 1 edge messages carry (device, boot, seq) from one per-boot counter: the seqs seen
        # must form one gap-free run, which is how a lost message shows up.
        self._seqs: dict[tuple[str, int], SeqSet] = defaultdict(SeqSet)
        self._seq_span: dict[tuple[str, int], list[int]] = {}
        self.qos1_duplicates = 0
        self.messages: dict[str, int] = defaultdict(int)
        self.bytes: dict[str, int] = defaultdict(int)
        self.device_bytes: dict[tuple[str, str], int] = defaultdict(int)  # (device, kind) -> payload bytes

    def _row(self, device: str) -> DeviceRow:
        r = self.devices.get(device)
        if r is None:
            r = self.devices[device] = DeviceRow(device)
        return r

    def feed(self, d: Decoded, payload_size: int = 0) -> None:
        k, v = d.topic.kind, d.value
        with self._lock:
            self.messages[k.value] += 1
            self.bytes[k.value] += payload_size
            if d.topic.device is not None and k is not Kind.LABEL:
                self.device_bytes[(d.topic.device, k.value)] += payload_size
            if k in (Kind.EVENT, Kind.FEAT, Kind.HARD):
                self._seq(v.device, v.boot, v.seq)
            if k is Kind.STATUS:
                r = self._row(v.device)
                r.state = v.state
                if v.models:
                    r.task, r.model = next(iter(v.models.items()))
            elif k is Kind.PRED:
                self._pred(v)
            elif k is Kind.FEAT:
                self._feat(v)
            elif k is Kind.TELEMETRY:
                r = self._row(v.device)
                r.uplink, r.raw, r.outbox, r.fps = v.uplink_bytes, v.raw_bytes, v.outbox_depth, v.fps
                r.frames = v.frames
                r.dropped_frames, r.counters = v.dropped_frames, dict(v.counters)
            elif k is Kind.MODEL_STATE:
                r = self._row(v.device)
                if v.state == "loaded":
                    r.swaps += 1
                    r.model = v.version
                    self.swap_events.append((v.ts, v.device, v.version))
                elif v.state == "rejected":
                    r.rejected_models += 1
                    self.reject_events.append((v.ts, v.device, v.offered or 0, v.reason))
            elif k is Kind.MANIFEST:
                self.manifests[v.task] = v
                if len(self.published) < MAX_EVENTS:
                    self.published[(v.task, v.version)] = (v.created, v.metrics.get("accuracy"))
                    self.version_metrics[(v.task, v.version)] = dict(v.metrics)
            elif k is Kind.MODEL_VERSION and len(self.version_metrics) < MAX_EVENTS:
                self.version_metrics[(v.task, v.version)] = dict(v.metrics)  # a release's candidate
            elif k is Kind.RELEASE:
                self.rollout.release(v)
            elif k is Kind.ROLLOUT_EVENT:
                self.rollout.event(v)
            elif k is Kind.LABEL:
                self.label_times[v.task].extend([v.ts] * len(v.items))
            elif k is Kind.HUB_STATUS:
                self.hub = v
            elif k is Kind.CLOUD_STATUS:
                self.workers[v.id] = v

    def _seq(self, device: str, boot: int, seq: int) -> None:
        key = (device, boot)
        if not self._seqs[key].add(seq):
            self.qos1_duplicates += 1
            return
        span = self._seq_span.get(key)
        if span is None:
            self._seq_span[key] = [seq, seq, 1]
        else:
            span[0], span[1], span[2] = min(span[0], seq), max(span[1], seq), span[2] + 1

    def qos1_gaps(self) -> dict[str, int]:
        """Per device/boot: sequence numbers missing between the lowest and highest seen."""
        return {f"{d}/{b}": (hi - lo + 1) - n for (d, b), (lo, hi, n) in self._seq_span.items()}

    def _pred(self, p: schemas.Prediction) -> None:
        r = self._row(p.device)
        r.task, r.model = p.task, max(r.model, p.model_version)
        r.preds += 1
        r.escalated += int(p.escalated)
        r.cloud_answers += int(p.source == "cloud")
        pv = self.preds_by_version[(p.task, p.model_version)]
        pv[0] += 1
        pv[1] += int(p.escalated)
        t = _truth(p.ref)
        if t is None:
            return
        truth, drift = t
        ok = int(p.label == truth)
        self.timeline[p.task].append((p.ts, ok, drift))
        r.recent.append(ok)
        j = self.joint[(p.task, p.model_version)]
        j[0] += ok
        j[1] += 1
        if p.source == "cloud":
            c = self.cloud[(p.task, p.model_version)]
            c[0] += ok
            c[1] += 1
        key = (p.device, p.sample)
        if p.escalated:
            self._escalated[key] = p.task
            if len(self._escalated) > 100_000:
                self._escalated.pop(next(iter(self._escalated)))
        edge = self._edge_label.pop(key, None)
        if edge is not None:
            self._score_edge(p.task, edge, truth, key)
        else:
            self._pred_truth[key] = truth
            if len(self._pred_truth) > 100_000:
                self._pred_truth.pop(next(iter(self._pred_truth)))

    def _feat(self, fb: FeatureBatch) -> None:
        labels = np.asarray(fb.scores, dtype=np.float32).argmax(axis=1)
        for s, lab in zip(fb.sample.tolist(), labels.tolist(), strict=True):
            key = (fb.device, s)
            truth = self._pred_truth.pop(key, None)
            if truth is not None:
                self._score_edge(fb.task, (lab, fb.model_version), truth, key)
            else:
                self._edge_label[key] = (lab, fb.model_version)
                if len(self._edge_label) > 100_000:
                    self._edge_label.pop(next(iter(self._edge_label)))

    def _score_edge(self, task: str, edge: tuple[int, int], truth: int, key: tuple[str, int]) -> None:
        e = self.edge[(task, edge[1])]
        e[0] += int(edge[0] == truth)
        e[1] += 1
        if self._escalated.pop(key, None) is not None:
            x = self.escalated_edge[(task, edge[1])]
            x[0] += int(edge[0] == truth)
            x[1] += 1

    def summary(self) -> dict[str, Any]:
        with self._lock:
            def acc(tbl: dict[tuple[str, int], list[int]]) -> dict[str, dict[str, Any]]:
                out: dict[str, dict[str, Any]] = {}
                for (task, ver), (c, n) in sorted(tbl.items()):
                    out.setdefault(task, {})[f"v{ver}"] = {"accuracy": round(c / n, 4) if n else None, "samples": n}
                return out

            def overall(tbl: dict[tuple[str, int], list[int]]) -> float | None:
                c, n = sum(c for c, _ in tbl.values()), sum(n for _, n in tbl.values())
                return round(c / n, 4) if n else None

            preds = sum(r.preds for r in self.devices.values())
            esc = sum(r.escalated for r in self.devices.values())
            uplink = sum(r.uplink for r in self.devices.values())
            raw = sum(r.raw for r in self.devices.values())
            rollout = self.rollout.summary()
            return {
                "accuracy_per_version_joint": acc(self.joint),
                "accuracy_per_version_edge_only": acc(self.edge),
                "accuracy_per_version_cloud": acc(self.cloud),
                "accuracy_joint": overall(self.joint),
                "accuracy_edge_only": overall(self.edge),
                "accuracy_cloud": overall(self.cloud),
                "predictions": preds,
                "escalation_ratio": round(esc / preds, 4) if preds else None,
                "cloud_answers": sum(r.cloud_answers for r in self.devices.values()),
                "uplink_bytes": uplink,
                "raw_frame_bytes": raw,
                "uplink_vs_raw": round(uplink / raw, 4) if raw else None,
                "hot_swaps": sum(r.swaps for r in self.devices.values()),
                # Two different refusals: the worker's gate keeps a candidate from ever being
                # published; an agent refuses a published model (signature, contract, ...).
                "gate_refusals": sum(w.counters.get("learn.rejected", 0) for w in self.workers.values()),
                "agent_model_rejections": sum(r.rejected_models for r in self.devices.values()),
                "frames_dropped": sum(r.dropped_frames for r in self.devices.values()),
                "capture_errors": sum(r.capture_errors for r in self.devices.values()),
                "capture_reconnects": sum(r.capture_reconnects for r in self.devices.values()),
                "devices": {d: {"task": r.task, "state": r.state, "model": r.model, "preds": r.preds,
                                "escalated": r.escalated, "uplink": r.uplink, "raw": r.raw,
                                "rolling_accuracy_joint": round(sum(r.recent) / len(r.recent), 4) if r.recent else None,
                                "capture_errors": r.capture_errors, "capture_reconnects": r.capture_reconnects,
                                "counters": r.counters}
                            for d, r in sorted(self.devices.items())},
                "models": {t: {"version": m.version, "metrics": {k: metric_value(k, v) for k, v in m.metrics.items()}}
                           for t, m in self.manifests.items()},
                "hub": {"counters": dict(self.hub.counters), "gauges": dict(self.hub.gauges)} if self.hub else None,
                "workers": {w: {"state": s.state, "counters": dict(s.counters), "gauges": dict(s.gauges)}
                            for w, s in self.workers.items()},
                "qos1_seq_gaps": self.qos1_gaps(),
                "qos1_duplicates": self.qos1_duplicates,
                "messages_seen": dict(self.messages),
                "bytes_seen": dict(self.bytes),
                "scoreboard": self._scoreboard(),
                **({"rollout": rollout} if rollout else {}),
            }

    def _scoreboard(self) -> list[dict[str, Any]]:
        """Per task: scoreboard.build over what was seen (the lock is held)."""
        tasks = sorted({t for t, _ in self.preds_by_version} | {t for t, _ in self.version_metrics})
        edge_kinds = ("pred", "feat", "hard", "event", "telemetry", "status", "model_state")
        boards = []
        for task in tasks:
            devs = [r for r in self.devices.values() if r.task == task]
            preds, frames, raw = (sum(r.preds for r in devs), sum(r.frames for r in devs), sum(r.raw for r in devs))
            names = {r.device for r in devs}
            sent: dict[str, int] = defaultdict(int)
            for (dev, kind), n in self.device_bytes.items():
                if dev in names and kind in edge_kinds:
                    sent[kind] += n
            uplink = {k: n / preds for k, n in sent.items() if preds and n}
            versions: dict[int, dict[str, Any]] = {}
            for (t, v), m in self.version_metrics.items():
                if t == task:
                    versions.setdefault(v, {}).update({
                        "holdout_edge_acc": m.get("accuracy"), "holdout_edge_f1": m.get("macro_f1"),
                        "holdout_cloud_acc": m.get("cloud_acc"), "holdout_cloud_f1": m.get("cloud_macro_f1"),
                        "holdout_joint_acc": m.get("joint_acc"), "holdout_joint_f1": m.get("joint_macro_f1"),
                        "holdout_escalated": m.get("escalated"),
                        "holdout_escalated_edge_acc": m.get("escalated_edge_acc"),
                        "holdout_escalated_cloud_acc": m.get("escalated_cloud_acc"),
                        "cloud_deferred": bool(m.get("defer", 0.0)), "labels": int(m["labels"]) if "labels" in m else None, "temperature": m.get("temperature"), "ece": m.get("ece")})
            for (t, v), (n, esc) in self.preds_by_version.items():
                if t == task:
                    versions.setdefault(v, {}).update({
                        "field_predictions": n, "field_escalation_ratio": round(esc / n, 4) if n else None,
                        "field_edge_acc": _acc(self.edge.get((t, v))), "field_joint_acc": _acc(self.joint.get((t, v))),
                        "field_cloud_answers_acc": _acc(self.cloud.get((t, v))),
                        "field_escalated_edge_acc": _acc(self.escalated_edge.get((t, v))),
                        "field_samples": self.joint[(t, v)][1] if (t, v) in self.joint else 0})
            try:
                spec = load_task(task).spec
                kind, targets = spec.kind, spec.targets
            except TaskSpecError:
                kind, targets = "?", None
            drift = scoreboard.drift_recovery(list(self.timeline.get(task, ())), list(self.label_times.get(task, ())))
            end = next((e for w in self.workers.values() if (e := scoreboard.end_row(dict(w.gauges), task))), None)
            boards.append(scoreboard.build(task, kind, versions, uplink, raw / frames if frames else None, drift,
                                           targets, end))
        return boards

    def point(self) -> dict[str, Any]:
        """One cumulative sample of the fleet (JSON-ready); a report differences consecutive ones."""
        with self._lock:
            def table(tbl: dict[tuple[str, int], list[int]]) -> dict[str, dict[str, list[int]]]:
                out: dict[str, dict[str, list[int]]] = {}
                for (task, ver), (c, n) in sorted(tbl.items()):
                    out.setdefault(task, {})[str(ver)] = [c, n]
                return out

            uplink: dict[str, int] = defaultdict(int)
            for r in self.devices.values():
                for k, v in r.counters.items():
                    if k.startswith("uplink_bytes."):
                        uplink[k.split(".", 1)[1]] += v
            hub_q: dict[str, float] = {}
            hub_drops: dict[str, int] = {}
            if self.hub is not None:
                g, c = self.hub.gauges, self.hub.counters
                hub_q = {k.split(".", 1)[1]: v for k, v in g.items() if k.startswith("queue.")}
                hub_drops = {cls: c.get(f"dropped.{cls}", 0) + c.get(f"expired.{cls}", 0) for cls in HUB_CLASSES
                             if f"in.{cls}" in c or f"dropped.{cls}" in c}
            return {
                "ts": round(time.time(), 3),
                "edge": table(self.edge), "joint": table(self.joint), "cloud": table(self.cloud),
                "preds": sum(r.preds for r in self.devices.values()),
                "escalated": sum(r.escalated for r in self.devices.values()),
                "uplink": dict(uplink),
                "raw": sum(r.raw for r in self.devices.values()),
                "hub_queue": hub_q, "hub_drops": hub_drops,
                "models": {t: m.version for t, m in self.manifests.items()},
                "capture_errors": sum(r.capture_errors for r in self.devices.values()),
            }

    def events(self) -> dict[str, list[dict[str, Any]]]:
        """What happened when: hot swaps, agents' refusals, published versions (unix times)."""
        with self._lock:
            return {
                "swaps": [{"ts": t, "device": d, "version": v} for t, d, v in self.swap_events],
                "rejections": [{"ts": t, "device": d, "offered": v, "reason": why} for t, d, v, why in self.reject_events],
                "published": [{"ts": t, "task": task, "version": v, "accuracy": a}
                              for (task, v), (t, a) in sorted(self.published.items(), key=lambda kv: kv[1][0])],
            }

    def rollout_text(self) -> tuple[str, str]:
        """(the monitor's rollout lines, the status line's token)."""
        with self._lock:
            gauges = {k: v for w in self.workers.values() for k, v in w.gauges.items() if ".rollout." in k}
            return self.rollout.line(gauges), self.rollout.token()

    def rows(self) -> list[DeviceRow]:
        with self._lock:
            return [self.devices[k] for k in sorted(self.devices)]
