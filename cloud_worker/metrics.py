"""The worker's /metrics (docs/INTEGRATIONS.md): read from its counters, queues, learners and rollouts at
scrape time; only the answer latency is recorded as it happens (a histogram)."""

from __future__ import annotations

from typing import Any

from shared.process.metrics import MetricsEndpoint, by_suffix, counter, gauge


class WorkerCollector:
    def __init__(self, service: Any) -> None:
        self.s = service

    def collect(self) -> Any:
        s = self.s
        snap = s.counters.snapshot()
        fam = counter("lepton_worker_escalations_answered", "Escalations the worker answered (replies published).")
        fam.add_metric([], snap.get("infer.replies", 0))
        yield fam
        fam = counter("lepton_worker_escalations_rejected", "Escalations refused as malformed, by reason.",
                      ["reason"])
        for reason, n in sorted(by_suffix(snap, "infer.rejected.").items()):
            fam.add_metric([reason], n)
        yield fam
        fam = counter("lepton_worker_escalations_shed", "Escalations dropped unanswered: the oldest when the "
                      "answer queue was full (dropped), or a batch whose model failed (errors).", ["reason"])
        fam.add_metric(["dropped"], s.infer_q.dropped)
        fam.add_metric(["errors"], snap.get("infer.errors", 0))
        yield fam
        fam = counter("lepton_worker_labelled_rows_learned", "Ground-truth rows taken into the learning buffers: "
                      "fused feature rows and raw samples.", ["kind"])
        fam.add_metric(["features"], snap.get("learn.rows.labelled", 0))
        fam.add_metric(["raw"], snap.get("learn.raw.labelled", 0))
        yield fam
        fam = counter("lepton_worker_retrains", "Retrains started, by what triggered them.", ["trigger"])
        for trig, n in sorted(by_suffix(snap, "learn.trigger.").items()):
            fam.add_metric([trig], n)
        yield fam
        fam = counter("lepton_worker_gate_decisions", "The gate's verdicts on retrained candidates.", ["outcome"])
        fam.add_metric(["published"], snap.get("learn.published", 0))
        fam.add_metric(["rejected"], snap.get("learn.rejected", 0))
        yield fam
        q = gauge("lepton_worker_queue_depth", "Messages waiting in the worker's queues.", ["queue"])
        q.add_metric(["infer"], len(s.infer_q))
        q.add_metric(["learn"], len(s.learn_q))
        yield q
        version = gauge("lepton_worker_deployed_version", "Model version the worker has deployed, per task.",
                        ["task"])
        edge = gauge("lepton_worker_edge_holdout_accuracy", "Holdout accuracy of the deployed edge model.", ["task"])
        cloud = gauge("lepton_worker_cloud_holdout_accuracy", "Holdout accuracy of the cloud model that answers "
                      "escalations (0 until it is fitted).", ["task"])
        for name, lr in sorted(dict(s.learners).items()):
            version.add_metric([name], lr.version)
            edge.add_metric([name], lr.deployed_acc)
            c = lr.cloud
            cloud.add_metric([name], c.accuracy if c is not None else 0.0)
        yield from (version, edge, cloud)
        stage = gauge("lepton_worker_rollout_stage", "Stage index of the task's staged release (-1: none active).",
                      ["task"])
        cand = gauge("lepton_worker_rollout_candidate_version", "Version being rolled out (0: none).", ["task"])
        if s.rollouts is not None:
            g = s.rollouts.gauges()
            for task in sorted({k.split(".rollout.")[0] for k in g if ".rollout." in k}):
                active = g.get(f"{task}.rollout.active", 0.0) > 0
                stage.add_metric([task], g.get(f"{task}.rollout.stage", -1.0) if active else -1.0)
                cand.add_metric([task], g.get(f"{task}.rollout.candidate", 0.0) if active else 0.0)
        yield from (stage, cand)


def worker_endpoint(service: Any) -> tuple[MetricsEndpoint, Any]:
    """The endpoint and its answer-latency histogram."""
    ep = MetricsEndpoint(service.cfg.metrics, [WorkerCollector(service)])
    hist = ep.histogram("lepton_worker_answer_latency_seconds", "Seconds from an escalation's arrival at the "
                        "worker to the end of answering its batch (queue wait included).")
    return ep, hist
