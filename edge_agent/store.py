"""Models on disk: accepted artifacts + manifests, which one serves, and the highest version ever accepted.

``state.json`` is replaced atomically (write, fsync, rename), and the highest accepted
version is written *before* the agent switches, so a crash mid-swap can never let an
older (possibly revoked) version in again.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class StoreState:
    highest: int = 0
    current: int | None = None
    previous: int | None = None
    last_boot: int = 0


class ModelStore:
    def __init__(self, root: Path, keep: int = 2) -> None:
        self.root = Path(root)
        self.keep = keep
        self.state = StoreState()

    def open(self) -> ModelStore:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / "state.json"
        if path.exists():
            try:
                raw = json.loads(path.read_text())
                self.state = StoreState(**{k: raw[k] for k in asdict(StoreState()) if k in raw})
            except (ValueError, TypeError, OSError):
                # A corrupt state file must not brick the device; keep the replaced copy for a human.
                path.replace(self.root / "state.json.corrupt")
                self.state = StoreState()
        return self

    def save(self) -> None:
        tmp = self.root / "state.json.tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self.state), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.root / "state.json")

    def next_boot(self, now: int) -> int:
        """A boot epoch strictly greater than any before, even after a fast restart or a clock step back."""
        boot = max(int(now), self.state.last_boot + 1)
        self.state.last_boot = boot
        self.save()
        return boot

    def paths(self, version: int) -> tuple[Path, Path]:
        return self.root / f"v{version}.onnx", self.root / f"v{version}.manifest.json"

    def write(self, version: int, onnx_bytes: bytes, manifest_raw: bytes) -> None:
        for path, data in zip(self.paths(version), (onnx_bytes, manifest_raw), strict=True):
            tmp = path.with_suffix(path.suffix + ".tmp")
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)

    def has(self, version: int) -> bool:
        return all(p.exists() for p in self.paths(version))

    def read(self, version: int) -> tuple[bytes, bytes]:
        onnx_path, manifest_path = self.paths(version)
        return onnx_path.read_bytes(), manifest_path.read_bytes()

    def accept(self, version: int) -> None:
        self.state.highest = max(self.state.highest, version)
        self.save()

    def switch(self, version: int) -> None:
        if self.state.current is not None and self.state.current != version:
            self.state.previous = self.state.current
        self.state.current = version
        self.save()
        self._prune()

    def rolled_back(self) -> None:
        self.state.current, self.state.previous = self.state.previous, None
        self.save()

    def _prune(self) -> None:
        keep = {v for v in (self.state.current, self.state.previous) if v is not None}
        versions = sorted((int(p.name[1:-5]) for p in self.root.glob("v*.onnx") if p.name[1:-5].isdigit()),
                          reverse=True)
        others = [v for v in versions if v not in keep]
        for v in others[max(0, self.keep - len(keep)):]:
            for p in self.paths(v):
                p.unlink(missing_ok=True)
