"""Continual learning for one task: state, ingestion, candidates, gate, registry.

Runs on one thread (the worker's learner thread, or a CLI): no locks inside. The cloud
model is swapped by reference, so the escalation thread can read ``learner.cloud`` at any
time. Publishing is the caller's ``publish(entry)`` callback, so this module does no MQTT.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from lepton_tasks import Dataset, Task
from shared.containers import FusedBatch
from shared.counters import Counters
from shared.schemas import Manifest
from shared.topics import Topics

from . import export as ex
from . import nets, policy, train
from .buffer import Audit, BalancedStore, Key, Pending, Row
from .config import WorkerConfig
from .learned import LearnedSet
from .registry import Entry, Registry, torch_bytes, torch_load

log = logging.getLogger(__name__)


@dataclass
class CloudModel:
    """The escalation answerer; immutable once published to the inference thread."""

    net: nets.CloudNet
    name: str
    accuracy: float
    device: torch.device

    @torch.no_grad()
    def predict(self, x: np.ndarray) -> np.ndarray:
        logits = train.logits_of(self.net, torch.as_tensor(x, dtype=torch.float32, device=self.device))
        return torch.softmax(logits, dim=1).cpu().numpy()


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
        self.edge: nets.EdgeNet | None = None
        self.cloud: CloudModel | None = None
        self.deployed: Entry | None = None
        self.deployed_acc = 0.0
        self.backbones: dict[int, int] = {}  # version -> version whose backbone it carries
        self.new_labels = 0
        self.raw_since_whole = 0
        self.raw_since_cloud = 0
        self.last_train = time.time()
        self.last_decision: dict | None = None

    # ---- state ----------------------------------------------------------------
    @property
    def version(self) -> int:
        return self.deployed.version if self.deployed else 0

    def load(self) -> bool:
        """Load the newest registry version and the cloud model; False when there is none."""
        latest = self.registry.latest(self.task.name)
        if latest is None:
            return False
        self._adopt(latest)
        cloud = self.registry.load_cloud(self.task.name)
        if cloud is not None:
            net = nets.build_cloud(self.task)
            net.load_state_dict(torch_load(cloud[0]))
            self.cloud = CloudModel(net.to(self.device).eval(), cloud[1]["name"], cloud[1]["accuracy"], self.device)
        else:
            self.cloud = self._train_cloud(self.seed_x, self.seed_y, None, generation=1)
        self._load_buffer()
        return True

    # ---- buffer persistence: a restarted worker keeps what it learned from ------------
    def save_buffer(self) -> None:
        arrays: dict[str, np.ndarray] = {}
        for name, store in (("f", self.features), ("r", self.raw)):
            rows = store.rows()
            arrays[f"{name}_device"] = np.array([r.key[0] for r in rows], dtype="<U48")
            arrays[f"{name}_sample"] = np.array([r.key[1] for r in rows], np.int64)
            arrays[f"{name}_label"] = np.array([r.label for r in rows], np.int64)
            arrays[f"{name}_weight"] = np.array([r.weight for r in rows], np.float32)
            arrays[f"{name}_pseudo"] = np.array([r.pseudo for r in rows], bool)
            arrays[f"{name}_version"] = np.array([r.version for r in rows], np.int64)
            arrays[f"{name}_data"] = (np.stack([r.data for r in rows]) if rows
                                      else np.zeros((0, 0), np.float32))
        arrays.update(self.learned.to_arrays())
        self.registry.save_buffer(self.task.name, arrays)
        self.dirty = False

    def _load_buffer(self) -> None:
        arrays = self.registry.load_buffer(self.task.name)
        if arrays is None:
            return
        self.learned.load_arrays(arrays)
        for name, store in (("f", self.features), ("r", self.raw)):
            for i in range(len(arrays[f"{name}_label"])):
                label = int(arrays[f"{name}_label"][i])
                if 0 <= label < self.n_classes:
                    store.add(Row((str(arrays[f"{name}_device"][i]), int(arrays[f"{name}_sample"][i])), label,
                                  float(arrays[f"{name}_weight"][i]), bool(arrays[f"{name}_pseudo"][i]),
                                  np.array(arrays[f"{name}_data"][i], np.float32), int(arrays[f"{name}_version"][i])))
        self.counters.inc("learn.buffer_restored", len(self.features) + len(self.raw))

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
        self.cloud = self._train_cloud(self.seed_x, self.seed_y, None, generation=1)
        decision = {"event": "bootstrap", "candidate": "whole", "trigger": "bootstrap", "candidate_acc": acc,
                    "deployed_version": 0, "deployed_acc": 0.0, "published": True,
                    "why": "first version: trained on the seed set", "train_s": stats.seconds,
                    "train_samples_per_s": stats.samples_per_s}
        entry = self._register(edge, parent=None, backbone=None, kind="bootstrap", acc=acc,
                               data={"seed": len(self.seed_y), "features": 0, "raw": 0, "pseudo": 0},
                               decision=decision)
        self.registry.log_decision(self.task.name, {**decision, "version": entry.version})
        self._adopt(entry)
        self.publish(entry)
        return entry

    def _train_cloud(self, x: np.ndarray, y: np.ndarray, w: np.ndarray | None, generation: int,
                     init: nets.CloudNet | None = None) -> CloudModel:
        t = self.cfg.training
        net = copy.deepcopy(init) if init is not None else nets.build_cloud(self.task)
        train.fit(net, x, y, weights=w, epochs=t.cloud_epochs if init is None else max(1, t.cloud_epochs // 3),
                  lr=t.lr, batch=t.batch, device=self.device, seed=t.seed)
        acc = train.accuracy(net, self.hold_x, self.hold_y, self.device)
        model = CloudModel(net.eval(), f"{self.task.name}-cloud-{generation}", acc, self.device)
        self.registry.save_cloud(self.task.name, torch_bytes(net.state_dict()),
                                 {"name": model.name, "accuracy": acc, "generation": generation, "rows": len(y)})
        return model

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
                self.features.add(Row(key, label, 1.0, False, np.array(fb.feat[i], np.float32), version))
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
        for i, key in enumerate(keys):
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

    def retrain(self, trigger: str = "manual", *, label_noise: bool = False) -> dict:
        """Train a candidate, gate it on the holdout, publish it if it passes; return the decision.

        ``label_noise`` shuffles the candidate's training labels: a deliberately bad candidate,
        for showing (and testing) that the gate refuses it."""
        assert self.edge is not None and self.deployed is not None
        t = self.cfg.training
        self.last_train = time.time()
        self.new_labels = 0
        rng = np.random.default_rng(t.seed)
        raw_rows = self.raw.rows()
        whole = self.raw_since_whole >= t.whole_min_raw
        cand = copy.deepcopy(self.edge)
        if whole:
            x = np.concatenate([self.seed_x, *([np.stack([r.data for r in raw_rows])] if raw_rows else [])])
            y = np.concatenate([self.seed_y, np.array([r.label for r in raw_rows], np.int64)])
            w = np.concatenate([np.ones(len(self.seed_y), np.float32),
                                np.array([r.weight for r in raw_rows], np.float32)])
            if label_noise:
                y = rng.permutation(y)
            teacher = self.cloud.net if self.cloud and self.cloud.accuracy > self.deployed_acc else None
            stats = train.fit(cand, x, y, weights=w, epochs=t.whole_epochs, lr=t.lr / 3, batch=t.batch,
                              device=self.device, seed=t.seed, teacher=teacher, distill=0.5 if teacher else 0.0)
            data = {"seed": len(self.seed_y), "raw": sum(not r.pseudo for r in raw_rows),
                    "pseudo": sum(r.pseudo for r in raw_rows), "features": 0}
        else:
            f, y, w, data = self._head_set(cand, raw_rows)
            if label_noise:
                y = rng.permutation(y)
            stats = train.fit_head(cand.head, f, y, weights=w, epochs=t.head_epochs, device=self.device, seed=t.seed)
        acc = train.accuracy(cand, self.hold_x, self.hold_y, self.device)
        degraded = self.degraded()
        g = policy.gate(self.cfg.gate, candidate_acc=acc, deployed_acc=self.deployed_acc, degraded=degraded)
        audited, audited_n = self.audit.accuracy(self.version)
        decision = {"event": "retrain", "trigger": trigger, "candidate": "whole" if whole else "head",
                    "candidate_acc": acc, "deployed_version": self.version, "deployed_acc": self.deployed_acc,
                    "audited_edge_acc": audited, "audited_rows": audited_n, "degraded": degraded,
                    "published": g.publish, "why": g.why, "data": data, "label_noise": label_noise,
                    "train_s": stats.seconds, "train_samples_per_s": stats.samples_per_s}
        self.counters.inc("learn.candidates")
        if g.publish:
            parent = self.version
            entry = self._register(cand, parent=parent, backbone=None if whole else self.backbones.get(parent, parent),
                                   kind="whole" if whole else "head", acc=acc, data=data, decision=decision)
            decision["version"] = entry.version
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
            decision["cloud"] = self._refresh_cloud(raw_rows)
            self.raw_since_cloud = 0
        self.registry.log_decision(self.task.name, decision)
        self.last_decision = decision
        log.info("%s: %s", self.task.name, decision["why"])
        return decision

    def _head_set(self, cand: nets.EdgeNet, raw_rows: list[Row]):
        """Features for a head fine-tune: seed and raw rows through the current backbone, plus the
        bridge's feature rows made by a version sharing that backbone (others would not match)."""
        backbone = self.backbones.get(self.version, self.version)
        xs = [self.seed_x] + ([np.stack([r.data for r in raw_rows])] if raw_rows else [])
        feats = [train.features(cand, np.concatenate(xs), self.device)]
        ys = [self.seed_y, np.array([r.label for r in raw_rows], np.int64)]
        ws = [np.ones(len(self.seed_y), np.float32), np.array([r.weight for r in raw_rows], np.float32)]
        raw_keys = {r.key for r in raw_rows}
        frows, stale = [], 0
        for r in self.features.rows():
            if self.backbones.get(r.version, r.version) != backbone:
                stale += 1
            elif r.key not in raw_keys:  # a raw row already stands for this sample
                frows.append(r)
        if frows:
            feats.append(np.stack([r.data for r in frows]))
            ys.append(np.array([r.label for r in frows], np.int64))
            ws.append(np.array([r.weight for r in frows], np.float32))
        data = {"seed": len(self.seed_y), "raw": sum(not r.pseudo for r in raw_rows),
                "pseudo": sum(r.pseudo for r in raw_rows) + sum(r.pseudo for r in frows),
                "features": sum(not r.pseudo for r in frows), "features_other_backbone": stale}
        return np.concatenate(feats), np.concatenate(ys), np.concatenate(ws), data

    def _refresh_cloud(self, raw_rows: list[Row]) -> dict:
        if not raw_rows or self.cloud is None:
            return {"trained": False}
        x = np.concatenate([self.seed_x, np.stack([r.data for r in raw_rows])])
        y = np.concatenate([self.seed_y, np.array([r.label for r in raw_rows], np.int64)])
        w = np.concatenate([np.ones(len(self.seed_y), np.float32), np.array([r.weight for r in raw_rows], np.float32)])
        gen = int(self.cloud.name.rsplit("-", 1)[-1]) + 1 if self.cloud.name[-1].isdigit() else 2
        old = self.cloud
        cand = self._train_cloud(x, y, w, gen, init=old.net)
        kept = cand.accuracy >= old.accuracy
        if kept:
            self.cloud = cand  # swapped by reference: the answering thread sees old or new, whole
        else:  # keep the better one on disk too
            self.registry.save_cloud(self.task.name, torch_bytes(old.net.state_dict()),
                                     {"name": old.name, "accuracy": old.accuracy, "generation": gen - 1})
        self.counters.inc("learn.cloud_refreshed" if kept else "learn.cloud_refresh_rejected")
        return {"trained": True, "rows": len(y), "candidate_acc": cand.accuracy, "previous_acc": old.accuracy,
                "kept": kept, "model": self.cloud.name}

    # ---- export, sign, register ----------------------------------------------------------
    def _reference_x(self) -> np.ndarray:
        n = min(self.cfg.export.reference_samples, len(self.hold_x))
        return self.hold_x[np.linspace(0, len(self.hold_x) - 1, n).astype(int)]

    def _register(self, edge: nets.EdgeNet, *, parent: int | None, backbone: int | None, kind: str, acc: float,
                  data: dict, decision: dict) -> Entry:
        if self.signer is None:
            raise RuntimeError("no signing key: cannot publish")
        e = self.cfg.export
        exported = ex.export(edge, self.task, self._reference_x(), opset=e.opset, parity_tolerance=e.parity_tolerance)
        version = self.registry.claim(self.task.name)
        try:
            metrics = {"accuracy": acc, "holdout_n": float(len(self.hold_y)), "parity": exported.parity,
                       "train_rows": float(sum(v for k, v in data.items() if k != "features_other_backbone"))}
            manifest = ex.build_manifest(self.task, self.topics, version, parent, exported, metrics,
                                         tolerance=e.tolerance, ttl_s=e.ttl_s)
            raw = ex.sign(manifest, self.signer.private, self.signer.public)
            record = self._record(version, parent, backbone or version, kind, manifest, raw, data, decision)
            return self.registry.write(self.task.name, version, exported.onnx, record,
                                       torch_bytes(edge.to("cpu").state_dict()))
        except BaseException:
            self.registry.release(self.task.name, version)
            raise

    def _record(self, version: int, parent: int | None, backbone: int, kind: str, m: Manifest, raw: bytes,
                data: dict, decision: dict, source: int | None = None) -> dict:
        import json

        signed = json.loads(raw)
        return {"task": self.task.name, "version": version, "parent": parent, "backbone": backbone, "kind": kind,
                "source_version": source, "metrics": dict(m.metrics), "data": data, "sha256": m.sha256,
                "size": m.size, "key_id": signed["key_id"], "signature": signed["signature"],
                "created": m.created, "expires": m.expires, "decision": decision, "manifest_raw": raw.decode(),
                "published": None, "artifact_cleared": False}

    def republish_as_new(self, source: int, kind: str) -> Entry:
        """promote / rollback: version N+1 carrying version ``source``'s exact weights and artifact.
        Agents only accept higher versions, so going back means going forward with old weights."""
        if self.signer is None:
            raise RuntimeError("no signing key: cannot publish")
        src = self.registry.get(self.task.name, source)
        state = self.registry.state(self.task.name, source)
        onnx_bytes = src.onnx
        old = Manifest.model_validate_json(src.manifest_raw)
        e = self.cfg.export
        version = self.registry.claim(self.task.name)
        try:
            now = time.time()
            m = old.model_copy(update={"version": version, "parent": source, "key_id": "", "signature": "",
                                       "artifact": str(self.topics.artifact(self.task.name, version)),
                                       "created": now, "expires": now + e.ttl_s})
            m = Manifest.model_validate(m.model_dump())
            raw = ex.sign(m, self.signer.private, self.signer.public)
            decision = {"event": kind, "source_version": source, "published": True,
                        "why": f"operator {kind}: v{version} carries v{source}'s weights"}
            record = self._record(version, source, src.record.get("backbone", source), kind, m, raw,
                                  src.record.get("data", {}), decision, source=source)
            entry = self.registry.write(self.task.name, version, onnx_bytes, record, state)
        except BaseException:
            self.registry.release(self.task.name, version)
            raise
        self.registry.log_decision(self.task.name, {**decision, "version": version})
        self._adopt(entry)
        self.publish(entry)
        return entry

    def gauges(self) -> dict[str, float]:
        acc, n = self.audit.accuracy(self.version)
        p = f"{self.task.name}."
        return {p + "version": float(self.version), p + "holdout_acc": self.deployed_acc,
                p + "audited_edge_acc": acc, p + "audited_rows": float(n), p + "buffer_features": float(len(self.features)),
                p + "buffer_raw": float(len(self.raw)), p + "pending_hard": float(len(self.pending)),
                p + "new_labels": float(self.new_labels),
                p + "cloud_acc": self.cloud.accuracy if self.cloud else 0.0}


def _rows(fb: FusedBatch, keep: np.ndarray) -> FusedBatch:
    """The batch with only the rows in ``keep``."""
    return FusedBatch(fb.task, fb.bridge, fb.boot, fb.seq, fb.devices, fb.context_names, fb.sample[keep],
                      fb.device_idx[keep], fb.feat[keep], fb.label[keep], fb.edge_label[keep], fb.edge_conf[keep],
                      fb.model_version[keep], fb.ctx[keep])
