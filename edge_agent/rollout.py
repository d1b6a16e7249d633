"""The release this agent follows: verified, persisted, and the model version it assigns to this device.

A staged rollout (docs/WORKER.md) publishes a signed, retained ``Release`` per task. The agent takes
one only if it is signed by the pinned key (when one is configured, as for manifests), is for its
task, and has a higher ``seq`` than the last one it took (a replayed older release is ``not_newer``);
it keeps it on disk (atomic write, fsync) so that after a restart it runs what its stage says before
the broker answers. From the release, its groups and its place on the hash ring
(``shared.model.groups``) it gets its **target** version:

- a manifest is adopted only if the release permits it: the target, or a version newer than the
  release's candidate (a version published to the fleet outside the release supersedes it), unless
  a pin holds the device; anything else is ``model.ignored.not_in_stage``;
- the target may be lower than the highest version this device ever accepted (a canary going back,
  a pinned group): the signed, newer release vouches for that, which is what the version rule
  protects against otherwise (an old manifest replayed).

Rejections are typed (``release.rejected.<reason>``): ``empty``, ``oversized``, ``not_json``,
``unknown_schema_version``, ``wrong_kind``, ``other_task``, ``bad_signature``, ``invalid``,
``not_newer``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from edge_agent.verify import Rejection
from shared.model import groups
from shared.process.counters import Counters
from shared.protocol import schemas
from shared.protocol.schemas import Release
from shared.security.envelope import json_object
from shared.security.signing import SignatureError, verify_obj

log = logging.getLogger(__name__)


def parse_release(raw: bytes, *, task: str, public_key: Ed25519PublicKey | None, seq: int) -> Release:
    """Check a release as received; raises Rejection (reasons above). ``seq``: the last one taken."""
    obj = json_object(raw, max_bytes=schemas.MAX_JSON_BYTES, what="retained release", error=Rejection)
    if obj.get("schema") != schemas.SCHEMA_VERSION:
        raise Rejection("unknown_schema_version", f"schema {str(obj.get('schema'))[:20]!r}")
    if obj.get("kind") != "release":
        raise Rejection("wrong_kind", f"kind {str(obj.get('kind'))[:40]!r}")
    if obj.get("task") != task:
        raise Rejection("other_task", f"release for task {str(obj.get('task'))[:60]!r}, this agent serves {task!r}")
    if public_key is not None:
        try:
            verify_obj(obj, public_key)
        except (SignatureError, schemas.SchemaError) as exc:
            raise Rejection("bad_signature", str(exc)) from None
    try:
        rel = Release.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise Rejection("invalid", f"{loc or '<root>'}: {first['msg']}"[:300]) from None
    if rel.seq < seq:
        raise Rejection("not_newer", f"release seq {rel.seq} < last taken {seq}")
    return rel


class ReleaseGate:
    """Runs on the agent's models thread only."""

    def __init__(self, task: str, device: str, device_groups: list[str], path: Path, counters: Counters) -> None:
        self.task = task
        self.device = device
        self.groups = list(device_groups)
        self.ring = groups.ring_position(device)
        self.path = Path(path)
        self.counters = counters
        self.release: Release | None = None
        self.public_key: Ed25519PublicKey | None = None

    def open(self, public_key: Ed25519PublicKey | None) -> None:
        """Take the release kept on disk, re-verified (a file changed behind our back is dropped)."""
        self.public_key = public_key
        if not self.path.exists():
            return
        try:
            self.release = parse_release(self.path.read_bytes(), task=self.task, public_key=public_key, seq=0)
        except (OSError, Rejection) as exc:
            self.counters.inc("release.stored_unusable")
            log.error("stored release %s unusable, ignored: %s", self.path, exc)

    def offer(self, raw: bytes) -> bool:
        """A release from the broker; True when it is new and now followed. Raises Rejection."""
        seq = self.release.seq if self.release is not None else 0
        rel = parse_release(raw, task=self.task, public_key=self.public_key, seq=seq)
        if rel.seq == seq:
            self.counters.inc("release.current")  # the retained copy of what we follow, redelivered
            return False
        self._persist(raw)
        self.release = rel
        self.counters.inc("release.accepted")
        log.info("release %s seq %d (%s, stage %d): this device runs v%s", rel.release, rel.seq, rel.state,
                 rel.stage + 1, self.target)
        return True

    def _persist(self, raw: bytes) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    @property
    def target(self) -> int | None:
        if self.release is None:
            return None
        return groups.target_version(self.release, self.device, self.groups)

    def permits(self, version: int) -> bool:
        """May this device adopt ``version`` now?"""
        rel = self.release
        if rel is None:
            return True
        if version == self.target:
            return True
        if groups.pinned(rel, groups.memberships(self.device, self.groups)) is not None:
            return False
        return version > max(rel.candidate, rel.control, rel.restored or 0)

    def describe(self) -> str:
        rel = self.release
        if rel is None:
            return ""
        return f"release {rel.release} ({rel.state}, stage {rel.stage + 1}/{len(rel.plan.stages)})"
