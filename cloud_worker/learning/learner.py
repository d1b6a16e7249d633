"""Continual learning for one task: the state, and the decisions.

Runs on one thread (the worker's learner thread, or a CLI): no locks inside. The parts it
orchestrates live beside it: :mod:`.intake` takes in fused rows and answered escalations,
:mod:`.rawstore` keeps the raw samples, :mod:`.cloudmodels` trains the cloud's models,
:mod:`.candidates` the edge's, :mod:`.release` exports, signs and registers versions, and
:mod:`.scoring` says what the edge-cloud split is worth on the holdout.

The cloud sees the raw sample through its own input contract and learns from every labelled
raw sample the worker holds; each retrain first refreshes it (when enough new labels came), then
trains an edge candidate taught by it (distillation, calibrated), gates and publishes. The cloud
models are swapped by reference, so the answering thread can read ``learner.cloud`` and the
``defer`` flags at any time. Publishing is the caller's ``publish(entry)``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from cloud_worker.config import WorkerConfig, raw_capacity
from cloud_worker.learning import buffer_io, policy, relabel, scoring
from cloud_worker.learning.buffer import BalancedStore, Key
from cloud_worker.learning.candidates import CandidateTrainer, WholeSet, head_set
from cloud_worker.learning.cloudjob import CloudJob
from cloud_worker.learning.intake import Intake
from cloud_worker.learning.learned import LearnedSet
from cloud_worker.learning.rawstore import RawStore
from cloud_worker.models import nets, stopcheck, train
from cloud_worker.models.calibrate import ece, softmax
from cloud_worker.models.cloudmodels import CloudTrainer, FeatureCloud, RawCloud
from cloud_worker.registry import Entry, Registry, torch_load
from cloud_worker.releasing.release import Decision, Releaser
from lepton_tasks import Dataset, Task
from shared.process.counters import Counters
from shared.protocol import rawsample
from shared.protocol.containers import FusedBatch
from shared.protocol.topics import Topics

log = logging.getLogger(__name__)

FIELD_DEFER_MIN = 40  # labelled recent escalations before the field, not the holdout, decides whether to defer


@dataclass
class Signer:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey | None = None


class Learner:
    def __init__(self, task: Task, cfg: WorkerConfig, registry: Registry, signer: Signer | None,
                 topics: Topics, *, device: torch.device, counters: Counters | None = None,
                 publish: Callable[[Entry], None] | None = None, data: Dataset | None = None,
                 stop: threading.Event | None = None, background: bool = False) -> None:
        self.task = task
        self.cfg = cfg
        self.registry = registry
        self.signer = signer
        self.device = device
        self.counters = counters or Counters()
        self.publish = publish or (lambda entry: None)
        self.stop = stop
        self.n_classes = len(task.classes)
        d = data or task.dataset()
        both = np.concatenate([d.seed, d.holdout])
        raw = d.raw[both]
        x, cx, n = task.preprocess_all(raw), task.preprocess_cloud_all(raw), len(d.seed)
        self.seed_x, self.seed_cx, self.seed_y = x[:n], cx[:n], d.y[d.seed]
        self.hold_x, self.hold_cx, self.hold_y = x[n:], cx[n:], d.y[d.holdout]
        self._edge_pipe, self._cloud_pipe = task.pipeline(), task.cloud_pipeline()
        b = cfg.buffer
        self.features = BalancedStore(b.capacity, self.n_classes)
        self.raw = RawStore(raw_capacity(b, task.kind), self.n_classes, self.prepare,
                            registry.task_dir(task.name) / "raw.sqlite")
        self.learned = LearnedSet(b.learned_keys)
        self.intake = Intake(b, self.n_classes, self.features, self.raw, self.learned, self.counters,
                             cfg.gate.field_rows)
        self.corrections = relabel.Corrections(b.learned_keys)  # supersession (cloud_worker/learning/relabel.py)
        self.edge: nets.EdgeNet | None = None
        self.cloud: RawCloud | None = None  # answers escalations that carry their sample; teaches the edge
        self.cloud_features: FeatureCloud | None = None  # answers escalations of features only
        self.worth: dict[str, float] = {}  # scoring.split_worth of the deployed edge and the raw cloud
        self.worth_features: dict[str, float] = {}  # ... and of the feature section
        self.field: tuple[float, float, int] | None = None  # judge_field(): edge, cloud, samples
        self.deployed: Entry | None = None
        self.whole_base: nets.EdgeNet | None = None  # the last whole candidate: where the next one starts
        self.deployed_acc = 0.0
        self.backbones: dict[int, int] = {}  # version -> version whose backbone it carries
        self.last_train = time.time()
        self.last_decision: dict | None = None
        dec = task.spec.decision
        self.policy = scoring.Policy(dec.policy, dec.threshold, dec.budget)
        self.candidates = CandidateTrainer(cfg.training, device, task.kind, self.n_classes, self.hold_x, self.hold_y,
                                           stop)
        self.clouds = CloudTrainer(task, cfg.training, registry, device, self.hold_cx, self.hold_y, self.hold_x, stop)
        self.cloud_job = CloudJob(background)  # the cloud model trains off this thread (service) or inline
        self.last_cloud: dict | None = None  # what the last cloud fit did (for decisions and status)
        # Reference inputs travel in every manifest (base64): at most ~128 KiB of them for large inputs.
        per = 4 * int(np.prod(task.input_shape))
        n_ref = max(1, min(cfg.export.reference_samples, len(self.hold_x), (128 * 1024) // per))
        self.releaser = Releaser(task, cfg, registry, signer, topics,
                                 self.hold_x[np.linspace(0, len(self.hold_x) - 1, n_ref).astype(int)])

    # ---- state ----------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.deployed.version if self.deployed else 0

    @property
    def dirty(self) -> bool:
        return self.intake.dirty

    @property
    def defer(self) -> bool:
        """The raw cloud is no better than the deployed edge where agents ask it: on the most recent
        escalations that got a label, when there are enough of them (the field may have drifted away
        from the holdout: a nightfall), else on the holdout samples agents would escalate. Like with
        like: the *deployed* edge is scored on those samples (the raw store holds them), against what
        the cloud answered before it learned their labels; an older edge's mistakes say nothing about
        this one (a window of old versions' escalations kept the cloud overriding a better edge)."""
        f = self.field
        if f is not None and f[2] >= FIELD_DEFER_MIN:
            return f[1] <= f[0]
        return bool(self.worth.get("defer", 0.0))

    def judge_field(self) -> tuple[float, float, int] | None:
        """(deployed edge accuracy, cloud accuracy, samples) on the recent labelled escalations whose
        samples the worker holds; kept in ``self.field`` for the answering thread."""
        rows = [(self.raw.get(k), y, c) for k, y, c in self.intake.escalated if k in self.raw]
        self.intake.new_escalated = 0
        if self.edge is None or len(rows) < FIELD_DEFER_MIN:
            self.field = None
            return None
        x = self.raw.edge_inputs([r for r, _, _ in rows]).astype(np.float32)
        y = np.array([y for _, y, _ in rows])
        edge = train.predict_logits(self.edge, x, self.device).argmax(1)
        self.field = (float((edge == y).mean()), float(np.mean([c == yy for _, yy, c in rows])), len(rows))
        return self.field

    @property
    def defer_features(self) -> bool:
        return bool(self.worth_features.get("defer", 1.0))

    def prepare(self, item: np.ndarray, wire: str) -> tuple[np.ndarray, np.ndarray]:
        """A raw sample as it travelled -> (edge input, cloud input). Pure: the answering thread uses it too."""
        sample = rawsample.decode(item, wire)  # type: ignore[arg-type]
        return self._edge_pipe(sample)[0], self._cloud_pipe(sample)[0]

    def load(self) -> bool:
        """Load the newest registry version, the stores and the cloud models; False when there is none."""
        latest = self.registry.latest(self.task.name)
        if latest is None:
            return False
        self._adopt(latest)
        restored = self.raw.open()
        restored += buffer_io.load(self.registry, self.task.name, self.n_classes, self.features, self.learned)
        self.counters.inc("learn.buffer_restored", restored)
        self.cloud = self.clouds.load()  # None for a classifier: ensure_cloud refits it from the stored rows
        self._fit_cloud_features()
        return True

    def ensure_cloud(self) -> bool:
        """Start fitting the raw cloud model when there is none yet (after bootstrap, or a classifier after
        a restart); True when this call started it."""
        if self.cloud is not None or self.edge is None or self.cloud_job.busy:
            return False
        return self.refresh_cloud(force=True).get("started", False)

    def save_buffer(self) -> None:
        buffer_io.save(self.registry, self.task.name, self.features, self.learned)
        self.raw.save()
        self.intake.dirty = False

    def close(self) -> None:
        self.cloud_job.join(1.0)  # a stopping worker interrupts it; its result is not used (nor waited for)
        self.raw.close()

    def sync(self) -> bool:
        """Adopt a newer version written by someone else (``models promote``); True if changed."""
        vs = self.registry.versions(self.task.name)
        if vs and vs[-1] > self.version:
            self._adopt(self.registry.get(self.task.name, vs[-1]))
            return True
        return False

    def _adopt(self, entry: Entry) -> None:
        state = self.registry.state(self.task.name, entry.version)
        if state is None:
            raise RuntimeError(f"{self.task.name} v{entry.version} has no torch state (v{entry.version}.pt)")
        edge = nets.load_edge_state(nets.build_edge(self.task), torch_load(state))
        self.edge = edge.to(self.device).eval()
        self.whole_base = None  # a new deployed edge (published, promoted, rolled back) starts the chain again
        self.deployed = entry
        self.deployed_acc = train.accuracy(self.edge, self.hold_x, self.hold_y, self.device)
        self.backbones = {v: self.registry.get(self.task.name, v).record.get("backbone", v)
                          for v in self.registry.versions(self.task.name)}
        self._score()
        self.judge_field()  # the new edge, on the same recent escalations

    def edge_probs(self, net: nets.EdgeNet, x: np.ndarray) -> np.ndarray:
        """What the edge graph outputs: calibrated probabilities."""
        return softmax(train.predict_logits(net, x, self.device), float(net.temperature))

    def _score(self) -> None:
        """What asking each cloud model adds to the deployed edge, on the holdout."""
        if self.edge is None:
            return
        edge_p = self.edge_probs(self.edge, self.hold_x)
        if self.cloud is not None:
            self.worth = scoring.split_worth(edge_p, self._cloud_holdout(), self.hold_y, self.policy)
        if self.cloud_features is not None:
            self.worth_features = scoring.split_worth(edge_p, self.cloud_features.predict(self.hold_x), self.hold_y,
                                                      self.policy)

    def _cloud_holdout(self) -> np.ndarray:
        """The raw cloud's probabilities on the holdout, computed once per cloud model."""
        assert self.cloud is not None
        if self.cloud.holdout_probs is None:
            self.cloud.holdout_probs = self.cloud.predict(self.hold_cx)
        return self.cloud.holdout_probs

    # ---- the cloud's models ---------------------------------------------------------------
    def refresh_cloud(self, force: bool = False) -> dict:
        """Fit the raw cloud model again on the labelled raw samples when enough new ones came (or
        ``force``): on a snapshot, off this thread when the learner runs in the background (the result
        is taken by :meth:`poll_cloud`), else inline."""
        t = self.cfg.training
        if self.cloud_job.busy:
            return {"started": False, "running": True}
        if not force and self.intake.new_raw_truth < t.cloud_refresh_rows:
            return {"started": False, "new_labelled_raw": self.intake.new_raw_truth}
        truth = self.raw.truth()
        cap = t.cloud_max_rows if self.cloud is None or not self.cloud.is_torch else t.cloud_refresh_max_rows
        if len(truth) > cap:
            # A network fine-tuned from the last fit needs the new samples and a reminder of the old ones
            # (half of each); a model refitted from scratch gets a uniform sample.
            rng = np.random.default_rng(t.seed + len(truth))
            new = cap // 2 if self.cloud is not None and self.cloud.is_torch else 0
            old_idx = rng.choice(len(truth) - new, cap - new, replace=False)
            truth = [truth[i] for i in np.sort(old_idx)] + (truth[-new:] if new else [])
        x = np.concatenate([self.seed_cx, self.raw.cloud_inputs(truth).astype(np.float32)]) if truth else self.seed_cx
        y = np.concatenate([self.seed_y, np.array([r.label for r in truth], np.int64)])
        old = self.cloud
        generation = old.generation + 1 if old else 1
        self.intake.new_raw_truth = 0  # counted from this snapshot on
        meta = {"rows": len(y), "labelled_raw": len(truth), "generation": generation}
        self.cloud_job.run(lambda: self.clouds.raw(x, y, generation, init=old), meta)
        info = {"started": True, **meta}
        if not self.cloud_job.background:
            info = self.poll_cloud() or info
        return info

    def poll_cloud(self) -> dict | None:
        """Take a finished cloud fit: it answers from now on unless it lost more than
        ``cloud_max_holdout_loss`` on the holdout. None while none has finished."""
        done = self.cloud_job.take()
        if done is None:
            return None
        cand, meta = done
        if isinstance(cand, BaseException):
            self.counters.inc("learn.cloud_interrupted" if isinstance(cand, train.Interrupted)
                              else "learn.cloud_failed")
            self.last_cloud = {"trained": False, "error": f"{type(cand).__name__}: {cand}"[:300], **meta}
            return self.last_cloud
        old = self.cloud
        kept = old is None or cand.accuracy >= old.accuracy - self.cfg.training.cloud_max_holdout_loss
        if kept:
            self.cloud = cand
            self.clouds.save(cand)
        self.counters.inc("learn.cloud_refreshed" if kept else "learn.cloud_refresh_rejected")
        self._score()
        if kept:
            self._fit_cloud_features()
        log.info("%s: cloud model %s on %d rows: holdout %.3f (%s)", self.task.name, cand.name, meta["rows"],
                 cand.accuracy, "kept" if kept else f"kept {old.name if old else None} at "
                 f"{old.accuracy if old else 0:.3f}")
        self.last_cloud = {"trained": True, **meta, "candidate_acc": cand.accuracy,
                           "previous_acc": old.accuracy if old else None, "kept": kept,
                           "model": self.cloud.name if self.cloud else None, "train_s": round(cand.train_s, 1)}
        return self.last_cloud

    def _fit_cloud_features(self) -> None:
        """The cloud section on the deployed backbone's features, from every labelled row there is."""
        if self.edge is None:
            return
        with stopcheck.watching(self.stop):
            backbone = self.backbones.get(self.version, self.version)
            truth = self.raw.truth()
            hs = head_set(self.edge, self.seed_x, self.seed_y, self.raw.edge_inputs(truth).astype(np.float32),
                          truth, self.features.rows(), self.backbones, backbone, self.device)
            self.cloud_features = self.clouds.features(self.edge, self.version, hs.feat, hs.y, hs.w)
            self._score()

    def predict_features(self, feat: np.ndarray, versions: np.ndarray) -> np.ndarray | None:
        """The cloud section on features an agent sent (escalations without their sample), or None when
        they come from a backbone other than the one it was trained on (answering thread: read-only)."""
        cf = self.cloud_features
        if cf is None or len(feat) == 0:
            return None
        want = self.backbones.get(cf.backbone_version, cf.backbone_version)
        if any(self.backbones.get(int(v), int(v)) != want for v in np.unique(versions)):
            return None
        return cf.predict_features(feat)

    # ---- bootstrap ------------------------------------------------------------------
    def bootstrap(self) -> Entry:
        """Train version 1 from the seed set, register and publish it (the cloud model comes after it:
        :meth:`ensure_cloud`, on the learner's thread)."""
        if self.registry.versions(self.task.name):
            raise RuntimeError(f"{self.task.name} already has versions {self.registry.versions(self.task.name)}")
        t = self.cfg.training
        torch.manual_seed(t.seed)
        edge = nets.build_edge(self.task)
        stats = train.fit(edge, self.seed_x, self.seed_y, epochs=t.bootstrap_epochs, lr=t.lr, batch=t.batch,
                          device=self.device, seed=t.seed, stop=self.stop)
        self.candidates.calibrate(edge)
        acc = train.accuracy(edge, self.hold_x, self.hold_y, self.device)
        decision = Decision("bootstrap", True, "first version: trained on the seed set", trigger="bootstrap",
                            candidate="whole", candidate_acc=acc,
                            details={"train_s": stats.seconds, "train_samples_per_s": stats.samples_per_s})
        entry = self.releaser.register(edge, parent=None, backbone=None, kind="bootstrap",
                                       metrics={**self._metrics(edge, acc), "labels": float(len(self.seed_y))},
                                       data={"seed": len(self.seed_y), "features": 0, "raw": 0, "pseudo": 0},
                                       decision=decision)
        decision.version = entry.version
        self.registry.log_decision(self.task.name, decision.as_dict())
        self._adopt(entry)
        self.publish(entry)  # agents first: the cloud model takes longer; until it exists the edge decides
        self.raw.open()
        self._fit_cloud_features()
        return entry

    def _metrics(self, edge: nets.EdgeNet, acc: float) -> dict[str, float]:
        """Holdout metrics in the manifest: the edge model's, its calibration, and what asking the cloud adds."""
        p = self.edge_probs(edge, self.hold_x)
        m = {"accuracy": acc, "holdout_n": float(len(self.hold_y)), "temperature": float(edge.temperature),
             "ece": ece(p, self.hold_y)}
        if self.cloud is not None and len(self.hold_y):
            w = scoring.split_worth(p, self._cloud_holdout(), self.hold_y, self.policy)
            m.update({"macro_f1": w["edge_macro_f1"], "cloud_acc": w["cloud_acc"],
                      "cloud_macro_f1": w["cloud_macro_f1"], "joint_acc": w["joint_acc"],
                      "joint_macro_f1": w["joint_macro_f1"], "escalated": w["escalated"],
                      "escalated_edge_acc": w["escalated_edge_acc"], "escalated_cloud_acc": w["escalated_cloud_acc"],
                      "defer": w["defer"], "cloud_generation": float(self.cloud.generation),
                      "cloud_rows": float(self.cloud.rows)})
        else:
            m["macro_f1"] = scoring.macro_f1(self.hold_y, p.argmax(1), self.n_classes)
        return m

    # ---- ingestion -----------------------------------------------------------------
    def ingest_fused(self, fb: FusedBatch) -> None:
        """Rows from the bridge (see :mod:`.intake`), without labels a correction superseded."""
        kept = relabel.drop_superseded(self, fb)
        if kept is not None:
            self.intake.fused(kept, int(self.edge.feat_dim) if self.edge is not None else -1)
        if self.intake.new_escalated >= 10:  # judged again every ten labelled escalations
            self.judge_field()

    def ingest_answered(self, keys: list[Key], versions: np.ndarray, labels: np.ndarray, conf: np.ndarray,
                        raw: list[tuple[np.ndarray, str]] | None = None, edge_x: np.ndarray | None = None,
                        cloud_x: np.ndarray | None = None) -> None:
        """Escalations the cloud answered (see :mod:`.intake`)."""
        self.intake.answered(keys, versions, labels, conf, raw, edge_x, cloud_x)

    # ---- retraining -------------------------------------------------------------------
    def _audit(self) -> tuple[float, int, float]:
        """Audited edge accuracy of the deployed version, its rows, and what to expect of those rows: the
        edge's own calibrated confidence on them (the holdout accuracy when rows carry no confidence)."""
        acc, n, expected = self.intake.audit.read(self.version)
        return acc, n, self.deployed_acc if expected is None else expected

    def due(self, now: float | None = None) -> str | None:
        acc, n, expected = self._audit()
        return policy.retrain_due(self.cfg.triggers, now=time.time() if now is None else now,
                                  last_train=self.last_train, new_labels=self.intake.new_labels, audited_acc=acc,
                                  audited_n=n, deployed_acc=expected)

    def degraded(self) -> bool:
        acc, n, expected = self._audit()
        return n >= self.cfg.triggers.drift_min_rows and acc < expected - self.cfg.triggers.drift_drop

    def _whole_set(self) -> WholeSet | None:
        """Seed, labelled raw samples and the cloud's answers on the rest, as edge inputs; None when the
        worker holds too few raw samples to train the whole model on."""
        t = self.cfg.training
        rows = self.raw.all()
        cloud = self.cloud
        teach = cloud is not None and cloud.accuracy >= self.deployed_acc
        if not teach:  # a cloud no better than the edge teaches nothing: its guesses are left out
            rows = [r for r in rows if not r.pseudo]
        if len(rows) < t.whole_min_raw:
            return None
        x = np.concatenate([self.seed_x, self.raw.edge_inputs(rows).astype(np.float32)])
        y = np.concatenate([self.seed_y, np.array([r.label for r in rows], np.int64)])
        truth = np.concatenate([np.ones(len(self.seed_y), bool), np.array([not r.pseudo for r in rows])])
        w = np.concatenate([np.ones(len(self.seed_y), np.float32), np.array([r.weight for r in rows], np.float32)])
        teacher = None
        if teach:
            assert cloud is not None
            cx = np.concatenate([self.seed_cx, self.raw.cloud_inputs(rows).astype(np.float32)])
            teacher = cloud.predict(cx)
        n_truth = sum(not r.pseudo for r in rows)
        data = {"seed": len(self.seed_y), "raw": n_truth, "pseudo": len(rows) - n_truth, "features": 0,
                "distilled": len(y) if teacher is not None else 0}
        return WholeSet(x, y, w, truth, teacher, data)

    def retrain(self, trigger: str = "manual", *, label_noise: bool = False, force_release: bool = False) -> dict:
        """Refresh the cloud, train an edge candidate it teaches, gate it on the holdout, publish it if
        it passes; return the decision. ``label_noise`` trains the candidate on wrong labels (each class
        named as the next): a deliberately bad candidate, for showing (and testing) that the gate refuses it. ``force_release``
        publishes a refused candidate anyway, marked ``forced`` (the staged-rollout demo: the field must
        catch it).

        Raises train.Interrupted when the service stops meanwhile: nothing is published."""
        assert self.edge is not None and self.deployed is not None
        with stopcheck.watching(self.stop):  # every step up to the version's registration can be abandoned
            decision, cand, whole, metrics, exported = self._candidate(trigger, label_noise, force_release)
        if decision.published:
            with stopcheck.watching(None):  # a version being written is finished first
                parent = self.version
                entry = self.releaser.register(cand.net, parent=parent,
                                               backbone=None if whole else self.backbones.get(parent, parent),
                                               kind=cand.kind, metrics=metrics, data=cand.data, decision=decision,
                                               exported=exported)
                decision.version = entry.version
                self._adopt(entry)
                self.counters.inc("learn.published")
                self.publish(entry)
        else:
            self.counters.inc("learn.rejected")
        decision.details["cloud_answers_with"] = self.cloud.name if self.cloud else None
        out = decision.as_dict()
        self.registry.log_decision(self.task.name, out)
        self.last_decision = out
        log.info("%s: %s", self.task.name, decision.why)
        try:
            self._fit_cloud_features()
        except train.Interrupted:  # the decision stands; the feature section is fitted again on restart
            self.counters.inc("learn.interrupted_after_decision")
        return out

    def _candidate(self, trigger: str, label_noise: bool, force_release: bool):
        """Train, score and gate a candidate; when it is to be published, export and check it too.
        Returns (decision, candidate, whole?, manifest metrics or None, exported or None)."""
        assert self.edge is not None
        t = self.cfg.training
        self.last_train = time.time()
        self.intake.new_labels = 0
        rng = np.random.default_rng(t.seed)
        cloud_info = self.refresh_cloud()  # inline: first, so the teacher is the best there is; else started
        degraded = self.degraded()
        backbone = self.backbones.get(self.version, self.version)
        recent = [(f, y) for f, y, v in self.intake.recent if self.backbones.get(v, v) == backbone]
        # Under drift a head candidate can be judged on the recent field rows (same backbone), and
        # learns from them twice over: the holdout alone shows only the world of the seed set.
        field_judged = degraded and len(recent) >= self.cfg.gate.field_min_rows
        ws = self._whole_set()
        whole = ws is not None
        if ws is not None:
            # Each whole candidate goes on from the last one (refused or not): a dozen epochs from a weak
            # edge at a fine-tuning rate do not get far, and the gate refused them all, so the edge never
            # improved (camera: 0.67 for seven minutes while the cloud reached 0.99). Chained, they add up
            # (offline on that run's samples, four in a row: 0.745, 0.865, 0.908, 0.960).
            base = self.whole_base if self.whole_base is not None else self.edge
            cand = self.candidates.whole(base, ws, rng, label_noise)
            if not label_noise:
                self.whole_base = cand.net
        else:
            truth = self.raw.truth()
            hs = head_set(self.edge, self.seed_x, self.seed_y, self.raw.edge_inputs(truth).astype(np.float32), truth,
                          self.features.rows(), self.backbones, backbone, self.device)
            if field_judged:
                hs.feat = np.concatenate([hs.feat, np.stack([f for f, _ in recent])])
                hs.y = np.concatenate([hs.y, np.array([y for _, y in recent], np.int64)])
                hs.w = np.concatenate([hs.w, np.ones(len(recent), np.float32)])
            cand = self.candidates.head(self.edge, hs, rng, label_noise)
        acc = train.accuracy(cand.net, self.hold_x, self.hold_y, self.device)
        field = None
        if field_judged and not whole:
            fx = np.stack([f for f, _ in recent])
            fy = np.array([y for _, y in recent], np.int64)
            field = (_head_acc(cand.net, fx, fy, self.device), _head_acc(self.edge, fx, fy, self.device), len(fy))
        elif degraded and whole:
            field = self._field_whole(cand.net)
        g = policy.gate(self.cfg.gate, candidate_acc=acc, deployed_acc=self.deployed_acc, degraded=degraded,
                        field=field)
        audited, audited_n, expected = self._audit()
        decision = Decision("retrain", g.publish, g.why, trigger=trigger, candidate=cand.kind, candidate_acc=acc,
                            deployed_version=self.version, deployed_acc=self.deployed_acc,
                            details={"audited_edge_acc": audited, "audited_rows": audited_n,
                                     "audited_expected_acc": expected, "degraded": degraded,
                                     "field": None if field is None else {"candidate_acc": field[0],
                                                                          "deployed_acc": field[1], "rows": field[2]},
                                     "data": cand.data, "label_noise": label_noise, "train_s": cand.stats.seconds,
                                     "train_samples_per_s": cand.stats.samples_per_s,
                                     "temperature": float(cand.net.temperature), "cloud": cloud_info})
        self.counters.inc("learn.candidates")
        if force_release and not g.publish:
            decision.why = f"FORCED release (demo), the gate said: {g.why}"
            decision.published = True
            decision.details["forced"] = True
        if not decision.published:
            return decision, cand, whole, None, None
        metrics = {**self._metrics(cand.net, acc), "labels": float(_labels(cand.data))}
        return decision, cand, whole, metrics, self.releaser.export(cand.net)

    def _field_whole(self, cand: nets.EdgeNet) -> tuple[float, float, int] | None:
        """Candidate and deployed edge on the most recent labelled raw samples (under drift)."""
        truth = self.raw.truth()[-self.cfg.gate.field_rows:]
        if len(truth) < self.cfg.gate.field_min_rows:
            return None
        x = self.raw.edge_inputs(truth).astype(np.float32)
        y = np.array([r.label for r in truth], np.int64)
        return train.accuracy(cand, x, y, self.device), train.accuracy(self.edge, x, y, self.device), len(y)

    # ---- operator actions ------------------------------------------------------------------
    def republish_as_new(self, source: int, kind: str) -> Entry:
        """promote / rollback: version N+1 carrying version ``source``'s exact weights (see Releaser)."""
        entry, decision = self.releaser.republish_as_new(source, kind)
        self.registry.log_decision(self.task.name, decision.as_dict())
        self._adopt(entry)
        self.publish(entry)
        return entry

    def gauges(self) -> dict[str, float]:
        acc, n = self.intake.audit.accuracy(self.version)
        p = f"{self.task.name}."
        raw = self.raw.counts()
        g = {p + "version": float(self.version), p + "holdout_acc": self.deployed_acc,
             p + "audited_edge_acc": acc, p + "audited_rows": float(n),
             p + "buffer_features": float(len(self.features)), p + "buffer_raw": float(raw["rows"]),
             p + "buffer_raw_labelled": float(raw["ground_truth"]),
             p + "pending_hard": float(len(self.intake.pending)), p + "new_labels": float(self.intake.new_labels),
             p + "cloud_acc": self.cloud.accuracy if self.cloud else 0.0,
             p + "cloud_generation": float(self.cloud.generation) if self.cloud else 0.0}
        g.update({p + "holdout." + k: float(v) for k, v in self.worth.items()})
        f = self.field
        if f is not None:
            g[p + "field.escalated_edge_acc"], g[p + "field.escalated_cloud_acc"] = f[0], f[1]
            g[p + "field.escalated_rows"] = float(f[2])
        g[p + "defer"] = float(self.defer)
        return g


def _labels(data: dict[str, int]) -> int:
    """Ground-truth rows a candidate learned from (seed, labelled raw samples, labelled feature rows)."""
    return int(data.get("seed", 0) + data.get("raw", 0) + data.get("features", 0))


def _head_acc(edge: nets.EdgeNet, feat: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Accuracy of ``edge``'s head on stored features."""
    with torch.no_grad():
        logits = edge.head(torch.as_tensor(feat, dtype=torch.float32, device=device))
    return float((logits.argmax(1).cpu().numpy() == y).mean()) if len(y) else 0.0
