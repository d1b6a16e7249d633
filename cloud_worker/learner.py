"""Continual learning for one task: the state, what comes in, and the decisions.

Runs on one thread (the worker's learner thread, or a CLI): no locks inside. The parts it
orchestrates live beside it: :mod:`.candidates` trains candidate edge models, :mod:`.cloud` the
cloud models, :mod:`.release` exports, signs and registers versions (with typed records),
:mod:`.buffer_io` keeps the buffer on disk and :mod:`.scoring` says what the edge-cloud split is
worth on the holdout. The cloud model is swapped by reference, so the escalation thread can read
``learner.cloud`` and ``learner.defer`` at any time. Publishing is the caller's ``publish(entry)``.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from torch import nn

from lepton_tasks import Dataset, Task
from shared.containers import FusedBatch
from shared.counters import Counters
from shared.topics import Topics

from . import buffer_io, nets, policy, scoring, train
from .buffer import Audit, BalancedStore, Key, Pending, Row
from .candidates import CandidateTrainer, head_set
from .cloud import CloudModel, CloudTrainer
from .config import WorkerConfig
from .learned import LearnedSet
from .registry import Entry, Registry, torch_bytes, torch_load
from .release import Decision, Releaser

log = logging.getLogger(__name__)

FIELD_DEFER_MIN = 40  # labelled escalations before the field, not the holdout, decides whether to defer
FIELD_WINDOW = 200  # the most recent labelled escalations that decide it


@dataclass
class Signer:
    private: Ed25519PrivateKey
    public: Ed25519PublicKey | None = None


class Learner:
    def __init__(self, task: Task, cfg: WorkerConfig, registry: Registry, signer: Signer | None,
                 topics: Topics, *, device: torch.device, counters: Counters | None = None,
                 publish: Callable[[Entry], None] | None = None, data: Dataset | None = None) -> None:
        self.task = task
        self.cfg = cfg
        self.registry = registry
        self.signer = signer
        self.topics = topics
        self.device = device
        self.counters = counters or Counters()
        self.publish = publish or (lambda entry: None)
        self.n_classes = len(task.classes)
        d = data or task.dataset()
        x = task.preprocess_all(d.raw[np.concatenate([d.seed, d.holdout])])
        self.seed_x, self.seed_y = x[:len(d.seed)], d.y[d.seed]
        self.hold_x, self.hold_y = x[len(d.seed):], d.y[d.holdout]
        b = cfg.buffer
        self.features = BalancedStore(b.capacity, self.n_classes)
        self.raw = BalancedStore(b.raw_capacity, self.n_classes)
        self.pending = Pending(b.pending_hard)
        self.labels_seen: dict[Key, int] = {}  # ground truth that arrived before its hard sample
        self.learned = LearnedSet(b.learned_keys)
        self.dirty = False  # ingested since the buffer was last saved
        self.audit = Audit()
        # The most recent labelled field rows (features, label, edge version): under drift, what the
        # gate judges candidates by besides the holdout, which shows only the world of the seed set.
        self.recent: deque[tuple[np.ndarray, int, int]] = deque(maxlen=cfg.gate.field_rows)
        # What the cloud answered for escalated samples, until their label comes; then whether edge and
        # cloud were right, over the last FIELD_WINDOW: the field's word on whether the cloud is worth
        # asking. The window outlives model versions on purpose: under drift a task may publish a version
        # every 20 s, each too short-lived to gather FIELD_DEFER_MIN labelled escalations of its own, and
        # a reset per version left a cloud that was wrong at night answering through every one of them.
        self.asked: OrderedDict[Key, int] = OrderedDict()
        self.field_escalations: deque[tuple[int, int]] = deque(maxlen=FIELD_WINDOW)
        self.edge: nets.EdgeNet | None = None
        self.cloud_raw: CloudModel | None = None
        self.cloud_features: CloudModel | None = None
        self.cloud: CloudModel | None = None  # the better of the two where agents would ask: answers
        self.worth: dict[str, float] = {}  # scoring.split_worth of the deployed edge and self.cloud
        self.deployed: Entry | None = None
        self.deployed_acc = 0.0
        self.backbones: dict[int, int] = {}  # version -> version whose backbone it carries
        self.new_labels = 0
        self.raw_since_whole = 0
        self.raw_since_cloud = 0
        self.last_train = time.time()
        self.last_decision: dict | None = None
        dec = task.spec.decision
        self.policy = scoring.Policy(dec.policy, dec.threshold, dec.budget)
        self.candidates = CandidateTrainer(cfg.training, device, self.seed_x, self.seed_y)
        self.clouds = CloudTrainer(task, cfg.training, registry, device, self.hold_x, self.hold_y)
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
    def defer(self) -> bool:
        """The cloud is no better than the deployed edge model where agents ask it: on the escalations
        that later got a label when there are enough of them (the field may have drifted away from the
        holdout), else on the holdout samples agents would escalate."""
        if len(self.field_escalations) >= FIELD_DEFER_MIN:
            edge_ok = sum(e for e, _ in self.field_escalations)
            cloud_ok = sum(c for _, c in self.field_escalations)
            return cloud_ok <= edge_ok
        return bool(self.worth.get("defer", 0.0))

    def load(self) -> bool:
        """Load the newest registry version and the cloud models; False when there is none."""
        latest = self.registry.latest(self.task.name)
        if latest is None:
            return False
        self._adopt(latest)
        cloud = self.registry.load_cloud(self.task.name)
        if cloud is not None:
            net = nets.build_cloud(self.task)
            net.load_state_dict(torch_load(cloud[0]))
            self.cloud_raw = CloudModel(net.to(self.device).eval(), cloud[1]["name"], cloud[1]["accuracy"], self.device)
        else:
            self.cloud_raw = self.clouds.raw(self.seed_x, self.seed_y, None, generation=1)
        restored = buffer_io.load(self.registry, self.task.name, self.n_classes, self.features, self.raw, self.learned)
        self.counters.inc("learn.buffer_restored", restored)
        self._fit_cloud_features()
        return True

    def save_buffer(self) -> None:
        buffer_io.save(self.registry, self.task.name, self.features, self.raw, self.learned)
        self.dirty = False

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
        edge = nets.build_edge(self.task)
        edge.load_state_dict(torch_load(state))
        self.edge = edge.to(self.device).eval()
        self.deployed = entry
        self.deployed_acc = train.accuracy(self.edge, self.hold_x, self.hold_y, self.device)
        self.backbones = {v: self.registry.get(self.task.name, v).record.get("backbone", v)
                          for v in self.registry.versions(self.task.name)}
        self._choose_cloud()

    # ---- the cloud model: raw or on features, whichever is worth asking --------------------
    def _probs(self, model: nn.Module) -> np.ndarray:
        return torch.softmax(torch.as_tensor(train.predict_logits(model, self.hold_x, self.device)), 1).numpy()

    def _choose_cloud(self) -> None:
        """Answer with the cloud model that is right more often on the holdout samples agents escalate."""
        if self.edge is None:
            return
        edge_p = self._probs(self.edge)
        best = None
        for m in (self.cloud_raw, self.cloud_features):
            if m is None:
                continue
            w = scoring.split_worth(edge_p, m.predict(self.hold_x), self.hold_y, self.policy)
            if best is None or w["escalated_cloud_acc"] > best[1]["escalated_cloud_acc"]:
                best = (m, w)
        if best is not None:
            self.cloud, self.worth = best  # swapped by reference: the answering thread sees old or new, whole

    def _fit_cloud_features(self) -> None:
        """The cloud section on the deployed backbone's features, from every labelled row there is."""
        if self.edge is None:
            return
        backbone = self.backbones.get(self.version, self.version)
        hs = head_set(self.edge, self.seed_x, self.seed_y, self.raw.rows(), self.features.rows(), self.backbones,
                      backbone, self.device)
        self.cloud_features = self.clouds.features(self.edge, self.version, hs.feat, hs.y, hs.w)
        self._choose_cloud()

    def predict_features(self, feat: np.ndarray, versions: np.ndarray) -> np.ndarray | None:
        """The cloud section on features an agent sent (escalations without input), or None when they
        come from a backbone other than the one it was trained on (answering thread: read-only)."""
        cf = self.cloud_features
        if cf is None or len(feat) == 0:
            return None
        want = self.backbones.get(cf.backbone_version, cf.backbone_version)
        if any(self.backbones.get(int(v), int(v)) != want for v in np.unique(versions)):
            return None
        with torch.no_grad():
            logits = train.logits_of(cf.net, torch.as_tensor(feat, dtype=torch.float32, device=self.device))
        return torch.softmax(logits, dim=1).cpu().numpy()

    def cloud_module(self) -> nn.Module | None:
        """The answering cloud model as one module from model input to logits (a teacher)."""
        c = self.cloud
        if c is None:
            return None
        return nn.Sequential(c.backbone, c.net) if c.backbone is not None else c.net

    # ---- bootstrap ------------------------------------------------------------------
    def bootstrap(self) -> Entry:
        """Train version 1 (and the cloud model) from the seed set, register it, publish it."""
        if self.registry.versions(self.task.name):
            raise RuntimeError(f"{self.task.name} already has versions {self.registry.versions(self.task.name)}")
        t = self.cfg.training
        torch.manual_seed(t.seed)
        edge = nets.build_edge(self.task)
        stats = train.fit(edge, self.seed_x, self.seed_y, epochs=t.bootstrap_epochs, lr=t.lr, batch=t.batch,
                          device=self.device, seed=t.seed)
        acc = train.accuracy(edge, self.hold_x, self.hold_y, self.device)
        self.cloud_raw = self.clouds.raw(self.seed_x, self.seed_y, None, generation=1)
        decision = Decision("bootstrap", True, "first version: trained on the seed set", trigger="bootstrap",
                            candidate="whole", candidate_acc=acc,
                            details={"train_s": stats.seconds, "train_samples_per_s": stats.samples_per_s})
        entry = self.releaser.register(edge, parent=None, backbone=None, kind="bootstrap",
                                       metrics=self._metrics(edge, acc),
                                       data={"seed": len(self.seed_y), "features": 0, "raw": 0, "pseudo": 0},
                                       decision=decision)
        decision.version = entry.version
        self.registry.log_decision(self.task.name, decision.as_dict())
        self._adopt(entry)
        self.publish(entry)
        return entry

    def _metrics(self, edge: nets.EdgeNet, acc: float) -> dict[str, float]:
        """Holdout metrics in the manifest: the edge model's, and what asking the cloud adds to it."""
        m = {"accuracy": acc, "holdout_n": float(len(self.hold_y))}
        cloud = self.cloud or self.cloud_raw
        if cloud is not None and len(self.hold_y):
            w = scoring.split_worth(self._probs(edge), cloud.predict(self.hold_x), self.hold_y, self.policy)
            m.update({"macro_f1": w["edge_macro_f1"], "cloud_acc": w["cloud_acc"],
                      "cloud_macro_f1": w["cloud_macro_f1"], "joint_acc": w["joint_acc"],
                      "joint_macro_f1": w["joint_macro_f1"], "escalated": w["escalated"],
                      "escalated_edge_acc": w["escalated_edge_acc"], "escalated_cloud_acc": w["escalated_cloud_acc"],
                      "defer": w["defer"]})
        return m

    # ---- ingestion -----------------------------------------------------------------
    def ingest_fused(self, fb: FusedBatch) -> None:
        """Rows from the bridge: audit the edge model, store labelled (and pseudo-labelled) features.
        Each (device, sample, label) is learned from once, however many copies arrive."""
        c = self.counters
        self.dirty = True
        n = len(fb.sample)
        fresh = np.fromiter((self.learned.admit((fb.devices[int(fb.device_idx[i])], int(fb.sample[i])),
                                                int(fb.label[i])) for i in range(n)), bool, n)
        if not fresh.all():
            c.inc("learn.rows.duplicate", int(n - fresh.sum()))
            if not fresh.any():
                return
            fb = _rows(fb, fresh)
        labelled = fb.label >= 0
        for v in np.unique(fb.model_version[labelled]):
            m = labelled & (fb.model_version == v)
            self.audit.add(int(v), fb.edge_label[m] == fb.label[m])
        bad = labelled & (fb.label >= self.n_classes)
        if bad.any():
            c.inc("learn.rows_rejected.bad_label", int(bad.sum()))
        if fb.feat.shape[1] != self._feat_dim():
            c.inc("learn.rows_rejected.feat_dim", len(fb.sample))
            return
        pseudo_conf, pseudo_w = self.cfg.buffer.pseudo_confidence, self.cfg.buffer.pseudo_weight
        for i in range(len(fb.sample)):
            key: Key = (fb.devices[int(fb.device_idx[i])], int(fb.sample[i]))
            label, version = int(fb.label[i]), int(fb.model_version[i])
            if 0 <= label < self.n_classes:
                cloud_label = self.asked.pop(key, None)
                if cloud_label is not None:
                    self.field_escalations.append((int(fb.edge_label[i] == label), int(cloud_label == label)))
                f = np.array(fb.feat[i], np.float32)
                self.features.add(Row(key, label, 1.0, False, f, version))
                self.recent.append((f, label, version))
                self.new_labels += 1
                c.inc("learn.rows.labelled")
                self._label_raw(key, label)
            elif label < 0:
                hard = self.pending.get(key)
                if hard is not None and hard[2] >= pseudo_conf:
                    self.features.add(Row(key, int(hard[1]), pseudo_w, True, np.array(fb.feat[i], np.float32),
                                          version))
                    c.inc("learn.rows.pseudo")
                else:
                    c.inc("learn.rows.unlabelled_unused")

    def _label_raw(self, key: Key, label: int) -> None:
        hard = self.pending.pop(key)
        if hard is not None:
            x = hard[0]
            if x is None:  # escalated with features only: no input to learn the whole model from
                return
        else:
            row = self.raw.get(key)
            if row is not None and not row.pseudo and row.label == label:
                return
            if row is None:
                self.labels_seen[key] = label
                while len(self.labels_seen) > self.cfg.buffer.pending_hard:
                    self.labels_seen.pop(next(iter(self.labels_seen)))
                return
            x = row.data
        if self.raw.add(Row(key, label, 1.0, False, x, 0)):
            self.raw_since_whole += 1
            self.raw_since_cloud += 1
            self.counters.inc("learn.raw.labelled")

    def ingest_hard(self, keys: list[Key], x: np.ndarray, labels: np.ndarray, conf: np.ndarray) -> None:
        """Escalated samples with the cloud's answers: raw inputs for whole-model training."""
        b = self.cfg.buffer
        has_input = x.ndim > 1 and x.shape[1] != 0  # escalations of features only carry no input
        for i, key in enumerate(keys):
            self.asked[key] = int(labels[i])
            if len(self.asked) > 20_000:
                self.asked.popitem(last=False)
            if not has_input:
                self.pending.put(key, None, int(labels[i]), float(conf[i]))  # a pseudo-label for its feature row
                continue
            truth = self.labels_seen.pop(key, None)
            xi = np.array(x[i], np.float32)
            if truth is not None:
                if self.raw.add(Row(key, truth, 1.0, False, xi, 0)):  # (its label was counted on arrival)
                    self.raw_since_whole += 1
                    self.raw_since_cloud += 1
                    self.counters.inc("learn.raw.labelled")
                continue
            self.pending.put(key, xi, int(labels[i]), float(conf[i]))
            if conf[i] >= b.pseudo_confidence and self.raw.add(Row(key, int(labels[i]), b.pseudo_weight, True, xi, 0)):
                self.counters.inc("learn.raw.pseudo")

    def _feat_dim(self) -> int:
        assert self.edge is not None
        return int(self.edge.feat_dim)

    # ---- retraining -------------------------------------------------------------------
    def due(self, now: float | None = None) -> str | None:
        acc, n = self.audit.accuracy(self.version)
        return policy.retrain_due(self.cfg.triggers, now=time.time() if now is None else now,
                                  last_train=self.last_train, new_labels=self.new_labels, audited_acc=acc,
                                  audited_n=n, deployed_acc=self.deployed_acc)

    def degraded(self) -> bool:
        acc, n = self.audit.accuracy(self.version)
        return n >= self.cfg.triggers.drift_min_rows and acc < self.deployed_acc - self.cfg.triggers.drift_drop

    def retrain(self, trigger: str = "manual", *, label_noise: bool = False, force_release: bool = False) -> dict:
        """Train a candidate, gate it on the holdout, publish it if it passes; return the decision.

        ``label_noise`` shuffles the candidate's training labels: a deliberately bad candidate,
        for showing (and testing) that the gate refuses it. ``force_release`` publishes a refused
        candidate anyway, marked ``forced`` (the staged-rollout demo: the field must catch it)."""
        assert self.edge is not None and self.deployed is not None
        t = self.cfg.training
        self.last_train = time.time()
        self.new_labels = 0
        rng = np.random.default_rng(t.seed)
        raw_rows = self.raw.rows()
        degraded = self.degraded()
        backbone = self.backbones.get(self.version, self.version)
        recent = [(f, y) for f, y, v in self.recent if self.backbones.get(v, v) == backbone]
        # Under drift a head candidate can be judged on the recent field rows (same backbone), and
        # learns from them twice over: the holdout alone shows only the world of the seed set.
        field_judged = degraded and len(recent) >= self.cfg.gate.field_min_rows
        whole = self.raw_since_whole >= t.whole_min_raw and not field_judged
        if whole:
            teacher = self.cloud_module() if self.cloud and self.cloud.accuracy > self.deployed_acc else None
            cand = self.candidates.whole(self.edge, raw_rows, teacher, rng, label_noise)
        else:
            hs = head_set(self.edge, self.seed_x, self.seed_y, raw_rows, self.features.rows(), self.backbones,
                          backbone, self.device)
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
        g = policy.gate(self.cfg.gate, candidate_acc=acc, deployed_acc=self.deployed_acc, degraded=degraded,
                        field=field)
        audited, audited_n = self.audit.accuracy(self.version)
        decision = Decision("retrain", g.publish, g.why, trigger=trigger, candidate=cand.kind, candidate_acc=acc,
                            deployed_version=self.version, deployed_acc=self.deployed_acc,
                            details={"audited_edge_acc": audited, "audited_rows": audited_n, "degraded": degraded,
                                     "field": None if field is None else {"candidate_acc": field[0],
                                                                          "deployed_acc": field[1], "rows": field[2]},
                                     "data": cand.data, "label_noise": label_noise, "train_s": cand.stats.seconds,
                                     "train_samples_per_s": cand.stats.samples_per_s})
        self.counters.inc("learn.candidates")
        if force_release and not g.publish:
            decision.why = f"FORCED release (demo), the gate said: {g.why}"
            decision.published = True
            decision.details["forced"] = True
        if g.publish or force_release:
            parent = self.version
            entry = self.releaser.register(cand.net, parent=parent,
                                           backbone=None if whole else self.backbones.get(parent, parent),
                                           kind=cand.kind, metrics=self._metrics(cand.net, acc), data=cand.data,
                                           decision=decision)
            decision.version = entry.version
            self._adopt(entry)
            if whole:
                self.raw_since_whole = 0
            self.counters.inc("learn.published")
            self.publish(entry)
        else:
            self.counters.inc("learn.rejected")
        if self.raw_since_cloud >= t.cloud_refresh_raw:
            # After publishing (agents first): the escalation answerer learns from every labelled raw
            # row, whatever the edge gate said.
            decision.details["cloud"] = self._refresh_cloud(raw_rows)
            self.raw_since_cloud = 0
        self._fit_cloud_features()
        decision.details["cloud_answers_with"] = self.cloud.name if self.cloud else None
        out = decision.as_dict()
        self.registry.log_decision(self.task.name, out)
        self.last_decision = out
        log.info("%s: %s", self.task.name, decision.why)
        return out

    def _refresh_cloud(self, raw_rows: list[Row]) -> dict:
        old = self.cloud_raw
        if not raw_rows or old is None:
            return {"trained": False}
        x = np.concatenate([self.seed_x, np.stack([r.data for r in raw_rows])])
        y = np.concatenate([self.seed_y, np.array([r.label for r in raw_rows], np.int64)])
        w = np.concatenate([np.ones(len(self.seed_y), np.float32), np.array([r.weight for r in raw_rows], np.float32)])
        gen = int(old.name.rsplit("-", 1)[-1]) + 1 if old.name[-1].isdigit() else 2
        cand = self.clouds.raw(x, y, w, gen, init=old.net)
        kept = cand.accuracy >= old.accuracy
        if kept:
            self.cloud_raw = cand
        else:  # keep the better one on disk too
            self.registry.save_cloud(self.task.name, torch_bytes(old.net.state_dict()),
                                     {"name": old.name, "accuracy": old.accuracy, "generation": gen - 1})
        self.counters.inc("learn.cloud_refreshed" if kept else "learn.cloud_refresh_rejected")
        return {"trained": True, "rows": len(y), "candidate_acc": cand.accuracy, "previous_acc": old.accuracy,
                "kept": kept, "model": self.cloud_raw.name}

    # ---- operator actions ------------------------------------------------------------------
    def republish_as_new(self, source: int, kind: str) -> Entry:
        """promote / rollback: version N+1 carrying version ``source``'s exact weights (see Releaser)."""
        entry, decision = self.releaser.republish_as_new(source, kind)
        self.registry.log_decision(self.task.name, decision.as_dict())
        self._adopt(entry)
        self.publish(entry)
        return entry

    def gauges(self) -> dict[str, float]:
        acc, n = self.audit.accuracy(self.version)
        p = f"{self.task.name}."
        g = {p + "version": float(self.version), p + "holdout_acc": self.deployed_acc,
             p + "audited_edge_acc": acc, p + "audited_rows": float(n),
             p + "buffer_features": float(len(self.features)), p + "buffer_raw": float(len(self.raw)),
             p + "pending_hard": float(len(self.pending)), p + "new_labels": float(self.new_labels),
             p + "cloud_acc": self.cloud.accuracy if self.cloud else 0.0}
        g.update({p + "holdout." + k: float(v) for k, v in self.worth.items()})
        if self.field_escalations:
            n = len(self.field_escalations)
            g[p + "field.escalated_edge_acc"] = sum(e for e, _ in self.field_escalations) / n
            g[p + "field.escalated_cloud_acc"] = sum(c for _, c in self.field_escalations) / n
            g[p + "field.escalated_rows"] = float(n)
        g[p + "defer"] = float(self.defer)
        return g


def _head_acc(edge: nets.EdgeNet, feat: np.ndarray, y: np.ndarray, device: torch.device) -> float:
    """Accuracy of ``edge``'s head on stored features."""
    with torch.no_grad():
        logits = edge.head(torch.as_tensor(feat, dtype=torch.float32, device=device))
    return float((logits.argmax(1).cpu().numpy() == y).mean()) if len(y) else 0.0


def _rows(fb: FusedBatch, keep: np.ndarray) -> FusedBatch:
    """The batch with only the rows in ``keep``."""
    return FusedBatch(fb.task, fb.bridge, fb.boot, fb.seq, fb.devices, fb.context_names, fb.sample[keep],
                      fb.device_idx[keep], fb.feat[keep], fb.label[keep], fb.edge_label[keep], fb.edge_conf[keep],
                      fb.model_version[keep], fb.ctx[keep])
