"""The field judge of a staged rollout, pure: counts of two arms in, wait / promote / rollback out.

Candidate arm: samples scored by the candidate version (on the stage's canary devices); control
arm: samples scored by the control version (the rest of the fleet) over the same period, the
stage so far. The rule, in order:

1. **The release itself failed**: ``max_swap_failures`` devices refused to load the candidate ->
   roll back (no sample size needed: it cannot run).
2. **Too early**: the stage has run less than ``min_stage_s`` -> wait.
3. **Too few samples**: either arm has fewer than ``min_samples`` samples or fewer than
   ``min_labels`` labelled samples (answered escalations for ``cloud_agreement``) -> wait; past
   ``max_stage_s`` -> roll back. Too little evidence is never a promotion.
4. **The metric** (5): inferior beyond the margin -> roll back.
5. **Guard rails**: inference error rate above control's by more than ``max_error_rate_increase``;
   median latency above control's times ``max_latency_ratio`` plus 1 ms; escalation rate
   significantly above control's by more than ``max_escalation_increase`` (the same one-sided
   test) -> roll back. The proportion metric that does not decide (agreement with the cloud when
   accuracy decides) is reported, not judged: a better model escalates other, harder samples, so
   its agreement there is not comparable sample for sample.
6. **Non-inferior** -> promote (the next stage, or the fleet); otherwise wait, and past
   ``max_stage_s`` roll back.

The metric's test is one-sided, of non-inferiority on the difference of two proportions
d = p_candidate - p_control with margin m: the Newcombe hybrid score interval (Wilson score
intervals of each proportion combined; Newcombe 1998, method 10) at level 1 - alpha gives a
lower bound L and an upper bound U. L > -m: non-inferior. U < -m: inferior beyond the margin.

Why this test: the arms are independent binomial samples (different devices, each sample
scored once); accuracies sit near 0.9-1.0, where the Wald interval's coverage collapses
(it is zero-width at p = 1) and is poor at the tens-to-hundreds of labels a stage gathers,
while the score-based interval keeps close to nominal coverage there, is closed form (no
iteration, no scipy on the worker) and is the usual interval for non-inferiority of
proportions. Caveats, documented in docs/WORKER.md: samples of one device are correlated
(a stage spans few devices), and the judge looks again every tick, so the real error rates
exceed the nominal alpha; ``min_stage_s`` and the minimum counts before the first look are
what keeps that in check.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

from shared.protocol.schemas import ArmFigures, Figures, ReleasePlan

Action = Literal["wait", "promote", "rollback"]
LATENCY_SLACK_MS = 1.0


@dataclass
class Arm:
    """What one arm did during the stage (see shared.protocol.schemas.ArmFigures for each field)."""

    version: int
    devices: int = 0
    samples: int = 0
    labelled: int = 0
    correct: int = 0
    escalations: int = 0
    agree: int = 0
    latency_ms_p50: float | None = None
    frames: int = 0
    errors: int = 0
    swap_failures: int = 0

    def figures(self) -> ArmFigures:
        def ratio(a: int, b: int) -> float | None:
            return min(1.0, a / b) if b else None

        return ArmFigures(version=self.version, devices=self.devices, samples=self.samples, labelled=self.labelled,
                          correct=self.correct, accuracy=ratio(self.correct, self.labelled),
                          escalations=self.escalations, agree=self.agree,
                          agreement=ratio(self.agree, self.escalations),
                          escalation_rate=ratio(self.escalations, self.samples), latency_ms_p50=self.latency_ms_p50,
                          frames=self.frames, errors=self.errors, error_rate=ratio(self.errors, self.frames),
                          swap_failures=self.swap_failures)

    def metric(self, metric: str) -> tuple[int, int]:
        """(successes, trials) of the metric."""
        return (self.correct, self.labelled) if metric == "accuracy" else (self.agree, self.escalations)


@dataclass(frozen=True)
class Verdict:
    action: Action
    reason: str
    figures: Figures


def wilson(successes: int, n: int, z: float) -> tuple[float, float]:
    """Wilson score interval of a proportion at quantile ``z``."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def newcombe(s1: int, n1: int, s2: int, n2: int, alpha: float) -> tuple[float, float, float]:
    """(difference, lower, upper) of p1 - p2: Newcombe's hybrid score interval with one-sided level ``alpha``
    on each side (so [lower, upper] is a two-sided 1 - 2 alpha interval)."""
    z = NormalDist().inv_cdf(1.0 - alpha)
    p1, p2 = s1 / n1, s2 / n2
    l1, u1 = wilson(s1, n1, z)
    l2, u2 = wilson(s2, n2, z)
    d = p1 - p2
    return d, d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)


def _test_name(plan: ReleasePlan) -> str:
    return f"newcombe-score non-inferiority, 1-sided alpha={plan.alpha:g}"


def judge(plan: ReleasePlan, cand: Arm, ctrl: Arm, elapsed_s: float) -> Verdict:
    """The decision for one stage, given what both arms did in it so far."""
    metric = plan.metric
    d = lo = hi = None
    cs, cn = cand.metric(metric)
    ks, kn = ctrl.metric(metric)
    if cn and kn:
        d, lo, hi = newcombe(cs, cn, ks, kn, plan.alpha)

    def out(action: Action, reason: str) -> Verdict:
        figs = Figures(candidate=cand.figures(), control=ctrl.figures(), elapsed_s=max(0.0, elapsed_s), metric=metric,
                       difference=d, lower=lo, upper=hi, margin=plan.margin, test=_test_name(plan))
        return Verdict(action, reason, figs)

    if cand.swap_failures >= plan.max_swap_failures:
        return out("rollback", f"{cand.swap_failures} device(s) failed to load v{cand.version}")
    if elapsed_s < plan.min_stage_s:
        return out("wait", f"stage has run {elapsed_s:.0f}s of at least {plan.min_stage_s:.0f}s")
    short = _shortfall(plan, cand, ctrl, cn, kn)
    if short:
        if elapsed_s >= plan.max_stage_s:
            return out("rollback", f"not enough evidence within {plan.max_stage_s:.0f}s: {short}")
        return out("wait", f"too few samples: {short}")
    assert d is not None and lo is not None and hi is not None
    what = "accuracy" if metric == "accuracy" else "agreement with the cloud"
    figures = (f"{what} {cs / cn:.3f} (n={cn}) vs control {ks / kn:.3f} (n={kn}), difference {d:+.3f}, "
               f"one-sided {100 * (1 - plan.alpha):g}% bounds [{lo:+.3f}, {hi:+.3f}], margin {plan.margin:g}")
    if hi < -plan.margin:
        return out("rollback", f"worse than control beyond the margin: {figures}")
    guard = _guard_rails(plan, cand, ctrl)
    if guard:
        return out("rollback", guard)
    if lo > -plan.margin:
        return out("promote", f"not worse than control by the margin: {figures}")
    if elapsed_s >= plan.max_stage_s:
        return out("rollback", f"not shown to be no worse within {plan.max_stage_s:.0f}s: {figures}")
    return out("wait", f"inconclusive so far: {figures}")


def _shortfall(plan: ReleasePlan, cand: Arm, ctrl: Arm, cn: int, kn: int) -> str:
    unit = "labelled" if plan.metric == "accuracy" else "answered escalations"
    short = []
    for name, arm, n in (("candidate", cand, cn), ("control", ctrl, kn)):
        if arm.samples < plan.min_samples:
            short.append(f"{name} {arm.samples}/{plan.min_samples} samples")
        if n < plan.min_labels:
            short.append(f"{name} {n}/{plan.min_labels} {unit}")
    return ", ".join(short)


def _guard_rails(plan: ReleasePlan, cand: Arm, ctrl: Arm) -> str:
    """The reason to roll back on a secondary figure, or ''."""
    if cand.frames and ctrl.frames:
        diff = cand.errors / cand.frames - ctrl.errors / ctrl.frames
        if diff > plan.max_error_rate_increase:
            return (f"inference error rate {cand.errors / cand.frames:.3f} exceeds control's "
                    f"{ctrl.errors / ctrl.frames:.3f} by more than {plan.max_error_rate_increase:g}")
    if cand.latency_ms_p50 is not None and ctrl.latency_ms_p50 is not None:
        limit = ctrl.latency_ms_p50 * plan.max_latency_ratio + LATENCY_SLACK_MS
        if cand.latency_ms_p50 > limit:
            return (f"median inference latency {cand.latency_ms_p50:.2f} ms exceeds control's "
                    f"{ctrl.latency_ms_p50:.2f} ms x {plan.max_latency_ratio:g} + {LATENCY_SLACK_MS:g} ms")
    if cand.samples and ctrl.samples:
        _, lo, _ = newcombe(cand.escalations, cand.samples, ctrl.escalations, ctrl.samples, plan.alpha)
        if lo > plan.max_escalation_increase:
            return (f"escalation rate {cand.escalations / cand.samples:.3f} vs control "
                    f"{ctrl.escalations / ctrl.samples:.3f}: higher by more than {plan.max_escalation_increase:g} "
                    f"(lower bound {lo:+.3f})")
    return ""
