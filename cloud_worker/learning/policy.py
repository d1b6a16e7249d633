"""Pure decisions: when to retrain (triggers) and whether to publish (gate)."""

from __future__ import annotations

from dataclasses import dataclass

from cloud_worker.config import GateSettings, TriggerSettings


def retrain_due(cfg: TriggerSettings, *, now: float, last_train: float, new_labels: int,
                audited_acc: float, audited_n: int, deployed_acc: float) -> str | None:
    """The trigger that fires, or None. New ground truth is needed for every trigger:
    retraining on unchanged data cannot produce a different model."""
    if new_labels <= 0 or now - last_train < cfg.cooldown_s:
        return None
    if new_labels >= cfg.min_new_labels:
        return "labels"
    if audited_n >= cfg.drift_min_rows and audited_acc < deployed_acc - cfg.drift_drop:
        return "drift"
    if now - last_train >= cfg.interval_s:
        return "time"
    return None


@dataclass(frozen=True)
class GateDecision:
    publish: bool
    why: str


def gate(cfg: GateSettings, *, candidate_acc: float, deployed_acc: float, degraded: bool,
         field: tuple[float, float, int] | None = None) -> GateDecision:
    """Publish a candidate that beats the deployed model on the holdout. When the deployed model has
    degraded in the field (drift), the holdout no longer tells the whole story: a candidate that is
    better on the recent labelled field rows (``field`` = candidate, deployed, rows) may lose up to
    ``max_holdout_loss`` on the holdout."""
    if candidate_acc >= deployed_acc + cfg.margin:
        return GateDecision(True, f"candidate {candidate_acc:.4f} beats deployed {deployed_acc:.4f} "
                                  f"by >= {cfg.margin:g}")
    if degraded and cfg.degraded_accept and candidate_acc >= deployed_acc:
        return GateDecision(True, f"deployed model degraded in the field; candidate {candidate_acc:.4f} "
                                  f">= deployed {deployed_acc:.4f} on the holdout")
    if (degraded and cfg.degraded_accept and field is not None and field[2] >= cfg.field_min_rows
            and field[0] >= field[1] + cfg.margin and candidate_acc >= deployed_acc - cfg.max_holdout_loss):
        return GateDecision(True, f"deployed model degraded in the field; candidate {field[0]:.4f} beats deployed "
                                  f"{field[1]:.4f} on {field[2]} recent labelled rows, holdout {candidate_acc:.4f} "
                                  f"vs {deployed_acc:.4f} (within {cfg.max_holdout_loss:g})")
    return GateDecision(False, f"candidate {candidate_acc:.4f} does not beat deployed {deployed_acc:.4f} "
                               f"by {cfg.margin:g}")
