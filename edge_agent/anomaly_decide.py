"""The per-sample decision of an anomaly task, pure: alert above the threshold, escalate in the band below it.

The edge model's graph outputs a ``score`` (higher: less normal). Above the alert threshold (set in
the cloud on held-out normal scores for the task's false-alarm rate, shared/model/threshold.py) the
agent raises an alert event and sends the raw window with it, so the cloud can confirm it; in the
band between the escalation threshold (set the same way for ``anomaly.escalate_rate``) and the alert
threshold the window escalates raw, so the cloud's stronger detector decides and the stream the
cloud learns normal from keeps its hard cases; below the band the agent acts alone. The rule is
``shared.model.threshold.decide``, the one the cloud scores its holdout with. Escalations of the band
go through the same token bucket as a classifier's; an alert is never rate-limited. A score that is
not finite is counted and escalated (the cloud should see what the edge cannot score), never raised.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge_agent.decide import TokenBucket
from shared.model.threshold import ALERT, ESCALATE, Threshold, decide
from shared.process.counters import Counters

AnomalyReason = Literal["normal", "band", "alert", "bad_score", "rate_limited"]


@dataclass(frozen=True, slots=True)
class AnomalyDecision:
    score: float
    alert: bool  # raise an alert event
    escalate: bool  # send the raw window to the cloud
    reason: AnomalyReason


class AnomalyDecider:
    def __init__(self, alert: float, escalate: float | None = None, *, bucket: TokenBucket | None = None,
                 counters: Counters | None = None) -> None:
        if not math.isfinite(alert) or (escalate is not None and not (math.isfinite(escalate) and escalate <= alert)):
            raise ValueError(f"thresholds must be finite with escalate <= alert, got alert {alert}, "
                             f"escalate {escalate}")
        self.alert, self.escalate = float(alert), escalate
        self.bucket = bucket
        self.counters = counters or Counters()

    @classmethod
    def from_thresholds(cls, alert: Threshold, band: Threshold | None = None, **kw) -> AnomalyDecider:
        return cls(alert.value, band.value if band is not None else None, **kw)

    def decide(self, score: float | np.ndarray) -> AnomalyDecision:
        s = float(np.asarray(score, np.float64).reshape(-1)[0])
        verdict = int(decide(np.array([s]), self.alert, self.escalate)[0])
        if not math.isfinite(s):
            reason: AnomalyReason = "bad_score"
        elif verdict == ALERT:
            self.counters.inc("anomaly.alert")
            return AnomalyDecision(s, True, True, "alert")
        elif verdict == ESCALATE:
            reason = "band"
        else:
            self.counters.inc("anomaly.normal")
            return AnomalyDecision(s, False, False, "normal")
        self.counters.inc(f"anomaly.{reason}")
        if self.bucket is not None and not self.bucket.take():
            self.counters.inc("anomaly.rate_limited")
            return AnomalyDecision(s, False, False, "rate_limited")
        return AnomalyDecision(s, False, True, reason)
