"""What the fleet did in the field, per model version, since the current rollout stage began.

Fed from four places, each on its own thread (hence the lock): the learner thread (fused rows:
the edge model's version, label and guess for every sample), the answering thread (escalations:
the version that asked, the edge's label and the cloud's), and the network thread (agents'
telemetry: latency, frames and inference errors of the serving version; model states: refusals
to load a version; births: groups). The counts come out as :class:`judge.Arm` per version, and
persist with the rollout so a restarted worker resumes a stage with the evidence it had.
"""

from __future__ import annotations

import statistics
import threading
from collections import OrderedDict, defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cloud_worker.rollout.judge import Arm
from shared.model.groups import ring_position
from shared.protocol.containers import FusedBatch
from shared.protocol.schemas import ModelState, Status, Telemetry

MAX_KEYS = 200_000  # (device, sample) rows remembered so a redelivered row counts once
ERROR_COUNTERS = ("frames.inference_error", "frames.bad_input")


@dataclass
class _Counts:
    samples: int = 0
    labelled: int = 0
    correct: int = 0
    escalations: int = 0
    agree: int = 0
    frames: int = 0
    errors: int = 0
    devices: set[str] = field(default_factory=set)
    latency: dict[str, float] = field(default_factory=dict)  # device -> its latest median latency, ms
    refused: set[str] = field(default_factory=set)  # devices that refused to load this version


class FieldCounts:
    def __init__(self, task: str) -> None:
        self.task = task
        self._lock = threading.Lock()
        self._v: dict[int, _Counts] = defaultdict(_Counts)
        self._rows: OrderedDict[tuple[str, int], bool] = OrderedDict()  # -> labelled already counted
        self._tele: dict[str, tuple[int, int]] = {}  # device -> (frames, errors) at its last telemetry
        self.fleet: dict[str, tuple[float, tuple[str, ...]]] = {}  # online device -> (ring, groups)

    # ---- inputs -------------------------------------------------------------------------
    def fused(self, fb: FusedBatch) -> None:
        with self._lock:
            for i in range(len(fb.sample)):
                key = (fb.devices[int(fb.device_idx[i])], int(fb.sample[i]))
                label = int(fb.label[i])
                seen = self._rows.get(key)
                if seen is True or (seen is False and label < 0):
                    continue  # a copy (redelivery, republished batch, or the same row still unlabelled)
                c = self._v[int(fb.model_version[i])]
                if seen is None:
                    c.samples += 1
                    c.devices.add(key[0])
                if label >= 0:
                    c.labelled += 1
                    c.correct += int(int(fb.edge_label[i]) == label)
                self._rows[key] = label >= 0
                self._rows.move_to_end(key)
            while len(self._rows) > MAX_KEYS:
                self._rows.popitem(last=False)

    def escalations(self, versions: np.ndarray, edge: np.ndarray, cloud: np.ndarray) -> None:
        with self._lock:
            for v, e, c in zip(versions.tolist(), edge.tolist(), cloud.tolist(), strict=True):
                cnt = self._v[int(v)]
                cnt.escalations += 1
                cnt.agree += int(e == c)

    def telemetry(self, t: Telemetry) -> None:
        version = t.models.get(self.task)
        errors = sum(t.counters.get(k, 0) for k in ERROR_COUNTERS)
        with self._lock:
            last = self._tele.get(t.device)
            self._tele[t.device] = (t.frames, errors)
            if version is None:
                return
            c = self._v[version]
            if t.latency_ms_p50 > 0:
                c.latency[t.device] = t.latency_ms_p50
            if last is not None and t.frames >= last[0] and errors >= last[1]:  # not across a reboot
                c.frames += t.frames - last[0]
                c.errors += errors - last[1]

    def model_state(self, m: ModelState) -> None:
        if m.task != self.task or m.state != "rejected" or not m.offered:
            return
        with self._lock:
            self._v[m.offered].refused.add(m.device)

    def status(self, s: Status) -> None:
        with self._lock:
            if s.state == "online" and (not s.models or self.task in s.models):
                self.fleet[s.device] = (ring_position(s.device), tuple(s.groups))
            else:
                self.fleet.pop(s.device, None)

    # ---- outputs ------------------------------------------------------------------------
    def arm(self, version: int) -> Arm:
        with self._lock:
            c = self._v.get(version) or _Counts()
            lat = statistics.median(c.latency.values()) if c.latency else None
            return Arm(version, devices=len(c.devices), samples=c.samples, labelled=c.labelled, correct=c.correct,
                       escalations=c.escalations, agree=c.agree, latency_ms_p50=lat, frames=c.frames, errors=c.errors,
                       swap_failures=len(c.refused))

    def rings(self) -> tuple[dict[str, float], dict[str, tuple[str, ...]]]:
        """Ring positions and groups of the devices known online."""
        with self._lock:
            return {d: r for d, (r, _) in self.fleet.items()}, {d: g for d, (_, g) in self.fleet.items()}

    def reset(self) -> None:
        """A new stage: its evidence starts now (the set of rows seen stays, so old copies stay out)."""
        with self._lock:
            self._v.clear()

    def dump(self) -> dict[str, Any]:
        with self._lock:
            return {str(v): {**{k: x for k, x in asdict(c).items() if k not in ("devices", "refused")},
                             "devices": sorted(c.devices), "refused": sorted(c.refused)}
                    for v, c in self._v.items()}

    def restore(self, data: dict[str, Any]) -> None:
        with self._lock:
            self._v.clear()
            for v, d in data.items():
                self._v[int(v)] = _Counts(**{**d, "devices": set(d.get("devices", ())),
                                              "refused": set(d.get("refused", ()))})
