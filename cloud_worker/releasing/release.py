"""Releasing a model version: export, parity, sign, register; and the typed records that say why.

A candidate that passed the gate becomes version N: ``torch.onnx.export`` (one self-contained
graph), a parity check against onnxruntime, a manifest with the task's input contract and the
holdout metrics, an Ed25519 signature, and an atomic registry entry. Publishing is the caller's.
Every decision (published or refused) is a :class:`Decision`, logged to the registry.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from cloud_worker.config import WorkerConfig
from cloud_worker.models import nets
from cloud_worker.registry import Entry, Registry, torch_bytes
from cloud_worker.releasing import export as ex
from lepton_tasks import Task
from shared.protocol.schemas import Manifest
from shared.protocol.topics import Topics


@dataclass
class Decision:
    """One gate decision as logged in ``decisions.jsonl`` (``details`` holds what only some events carry)."""

    event: str  # bootstrap, retrain, promote, rollback, export_failed
    published: bool
    why: str
    trigger: str | None = None
    candidate: str | None = None  # whole | head
    candidate_acc: float | None = None
    deployed_version: int = 0
    deployed_acc: float = 0.0
    version: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "details" and v is not None}
        return {**d, **self.details}


@dataclass
class ReleaseRecord:
    """What the registry keeps beside each version's ONNX file (``v{N}.json``)."""

    task: str
    version: int
    parent: int | None
    backbone: int
    kind: str
    source_version: int | None
    metrics: dict[str, float]
    data: dict[str, int]
    sha256: str
    size: int
    key_id: str
    signature: str
    created: float
    expires: float
    decision: dict[str, Any]
    manifest_raw: str
    published: float | None = None
    artifact_cleared: bool = False

    @classmethod
    def of(cls, task: str, version: int, parent: int | None, backbone: int, kind: str, m: Manifest, raw: bytes,
           data: dict, decision: Decision, source: int | None = None) -> ReleaseRecord:
        signed = json.loads(raw)
        return cls(task, version, parent, backbone, kind, source, dict(m.metrics), data, m.sha256, m.size,
                   signed["key_id"], signed["signature"], m.created, m.expires, decision.as_dict(), raw.decode())


class Releaser:
    def __init__(self, task: Task, cfg: WorkerConfig, registry: Registry, signer, topics: Topics,
                 reference_x: np.ndarray) -> None:
        self.task = task
        self.cfg = cfg
        self.registry = registry
        self.signer = signer
        self.topics = topics
        self.reference_x = reference_x

    def _require_signer(self) -> None:
        if self.signer is None:
            raise RuntimeError("no signing key: cannot publish")

    def export(self, edge: nets.EdgeNet) -> ex.Exported:
        """Export and check ``edge`` (ExportError; Interrupted between steps when the worker stops)."""
        e = self.cfg.export
        return ex.export(edge, self.task, self.reference_x, opset=e.opset, parity_tolerance=e.parity_tolerance)

    def register(self, edge: nets.EdgeNet, *, parent: int | None, backbone: int | None, kind: str,
                 metrics: dict[str, float], data: dict, decision: Decision,
                 exported: ex.Exported | None = None) -> Entry:
        """Export (unless ``exported`` is given), check, sign and register ``edge`` as the next version
        (not yet published)."""
        self._require_signer()
        e = self.cfg.export
        if exported is None:
            exported = self.export(edge)
        version = self.registry.claim(self.task.name)
        try:
            metrics = {**metrics, "parity": exported.parity,
                       "train_rows": float(sum(v for k, v in data.items() if k != "features_other_backbone"))}
            manifest = ex.build_manifest(self.task, self.topics, version, parent, exported, metrics,
                                         tolerance=e.tolerance, ttl_s=e.ttl_s)
            raw = ex.sign(manifest, self.signer.private, self.signer.public)
            record = ReleaseRecord.of(self.task.name, version, parent, backbone or version, kind, manifest, raw, data,
                                      decision)
            return self.registry.write(self.task.name, version, exported.onnx, asdict(record),
                                       torch_bytes(edge.to("cpu").state_dict()))
        except BaseException:
            self.registry.release(self.task.name, version)
            raise

    def republish_as_new(self, source: int, kind: str) -> tuple[Entry, Decision]:
        """promote / rollback: version N+1 carrying version ``source``'s exact weights and artifact.
        Agents only accept higher versions, so going back means going forward with old weights."""
        self._require_signer()
        src = self.registry.get(self.task.name, source)
        state = self.registry.state(self.task.name, source)
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
            decision = Decision(kind, True, f"operator {kind}: v{version} carries v{source}'s weights",
                                details={"source_version": source})
            record = ReleaseRecord.of(self.task.name, version, source, src.record.get("backbone", source), kind, m,
                                      raw, src.record.get("data", {}), decision, source=source)
            entry = self.registry.write(self.task.name, version, src.onnx, asdict(record), state)
        except BaseException:
            self.registry.release(self.task.name, version)
            raise
        decision.version = version
        return entry, decision
