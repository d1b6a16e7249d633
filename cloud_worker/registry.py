"""The model registry on disk: one folder per task.

    {root}/{task}/v{N}.onnx       the artifact, byte-identical to what was published
    {root}/{task}/v{N}.json       record: metrics, training data counts, parent, backbone,
                                  sha256, signature, the signed manifest, the decision that made it
    {root}/{task}/v{N}.pt         torch state of the edge model (to fine-tune from)
    {root}/{task}/cloud.pt        the cloud model (escalations, teacher) and its metrics
    {root}/{task}/decisions.jsonl every gate decision, published or not, one JSON per line
    {root}/{task}/buffer.npz      the replay buffer, saved when the worker stops and after each retrain

Version numbers are claimed by creating ``v{N}.onnx`` exclusively, so two processes sharing
a registry can never both write version N.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
_V = re.compile(r"^v([1-9][0-9]*)\.json$")


class RegistryError(RuntimeError):
    pass


@dataclass(frozen=True)
class Entry:
    version: int
    record: dict[str, Any]
    onnx_path: Path

    @property
    def onnx(self) -> bytes:
        return self.onnx_path.read_bytes()

    @property
    def manifest_raw(self) -> bytes:
        return self.record["manifest_raw"].encode()


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def task_dir(self, task: str) -> Path:
        return self.root / task

    def versions(self, task: str) -> list[int]:
        d = self.task_dir(task)
        if not d.is_dir():
            return []
        return sorted(int(m.group(1)) for p in d.iterdir() if (m := _V.match(p.name)))

    def latest(self, task: str) -> Entry | None:
        vs = self.versions(task)
        return self.get(task, vs[-1]) if vs else None

    def get(self, task: str, version: int) -> Entry:
        d = self.task_dir(task)
        p = d / f"v{version}.json"
        if not p.exists():
            raise RegistryError(f"task {task!r} has no version {version} in {d} (have {self.versions(task)})")
        return Entry(version, json.loads(p.read_text()), d / f"v{version}.onnx")

    def claim(self, task: str) -> int:
        """Reserve the next version number (exclusive create of its .onnx)."""
        d = self.task_dir(task)
        d.mkdir(parents=True, exist_ok=True)
        n = max([*self.versions(task), *self._claimed(d)], default=0) + 1
        while True:
            try:
                fd = os.open(d / f"v{n}.onnx", os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                os.close(fd)
                return n
            except FileExistsError:
                n += 1

    @staticmethod
    def _claimed(d: Path) -> list[int]:
        return [int(m.group(1)) for p in d.iterdir() if (m := re.match(r"^v([1-9][0-9]*)\.onnx$", p.name))]

    def release(self, task: str, version: int) -> None:
        """Give back a claimed number that never got a record (export failed)."""
        d = self.task_dir(task)
        if not (d / f"v{version}.json").exists():
            (d / f"v{version}.onnx").unlink(missing_ok=True)
            (d / f"v{version}.pt").unlink(missing_ok=True)

    def write(self, task: str, version: int, onnx: bytes, record: dict[str, Any], state: bytes | None) -> Entry:
        d = self.task_dir(task)
        _atomic_write(d / f"v{version}.onnx", onnx)
        if state is not None:
            _atomic_write(d / f"v{version}.pt", state)
        # The record last: its presence is what makes the version exist.
        _atomic_write(d / f"v{version}.json", json.dumps(record, indent=1, sort_keys=True).encode())
        return self.get(task, version)

    def update(self, task: str, version: int, **fields: Any) -> None:
        e = self.get(task, version)
        rec = {**e.record, **fields}
        _atomic_write(self.task_dir(task) / f"v{version}.json", json.dumps(rec, indent=1, sort_keys=True).encode())

    def state(self, task: str, version: int) -> bytes | None:
        p = self.task_dir(task) / f"v{version}.pt"
        return p.read_bytes() if p.exists() else None

    def save_cloud(self, task: str, state: bytes, meta: dict[str, Any]) -> None:
        d = self.task_dir(task)
        d.mkdir(parents=True, exist_ok=True)
        _atomic_write(d / "cloud.pt", state)
        _atomic_write(d / "cloud.json", json.dumps(meta, indent=1, sort_keys=True).encode())

    def load_cloud(self, task: str) -> tuple[bytes, dict[str, Any]] | None:
        d = self.task_dir(task)
        if not (d / "cloud.pt").exists() or not (d / "cloud.json").exists():
            return None
        return (d / "cloud.pt").read_bytes(), json.loads((d / "cloud.json").read_text())

    def save_buffer(self, task: str, arrays: dict[str, Any]) -> None:
        import numpy as np

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        d = self.task_dir(task)
        d.mkdir(parents=True, exist_ok=True)
        _atomic_write(d / "buffer.npz", buf.getvalue())

    def load_buffer(self, task: str) -> dict[str, Any] | None:
        import numpy as np

        p = self.task_dir(task) / "buffer.npz"
        if not p.exists():
            return None
        try:
            with np.load(p, allow_pickle=False) as z:
                return {k: z[k] for k in z.files}
        except Exception as exc:  # noqa: BLE001 - a damaged buffer costs its rows, not the worker
            log.warning("ignoring unreadable replay buffer %s: %s", p, exc)
            return None

    def log_decision(self, task: str, decision: dict[str, Any]) -> None:
        d = self.task_dir(task)
        d.mkdir(parents=True, exist_ok=True)
        line = json.dumps({"ts": time.time(), **decision}, sort_keys=True)
        with open(d / "decisions.jsonl", "a") as f:
            f.write(line + "\n")

    def decisions(self, task: str) -> list[dict[str, Any]]:
        p = self.task_dir(task) / "decisions.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def torch_load(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
