"""Manifest and artifact checks, pure: each failure is a :class:`Rejection` with a stable reason.

Order matters: the signature is verified on the received JSON object before any pydantic
model is built from it, and nothing is fetched for a manifest that is not newer, not for
this task, or expired.
"""

from __future__ import annotations

import hashlib
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import ValidationError

from shared.protocol import schemas
from shared.protocol.schemas import Manifest
from shared.protocol.topics import Topics
from shared.security.envelope import json_object
from shared.security.onnx_guard import OnnxGuardError, check_onnx_bytes
from shared.security.signing import SignatureError, verify_manifest_obj


class Rejection(Exception):
    """``reason`` is the counter key; ``version`` the offered version when it could be read."""

    def __init__(self, reason: str, detail: str, version: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.version = version


def _offered(obj: Any) -> int | None:
    v = obj.get("version") if isinstance(obj, dict) else None
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 0 else None


def parse_manifest(raw: bytes, *, task: str, highest: int, public_key: Ed25519PublicKey | None,
                   topics: Topics, now: float, max_artifact_bytes: int, allowed: int | None = None) -> Manifest:
    """Check a manifest as received; returns it if the agent should fetch its artifact.

    ``allowed``: a version a signed release assigns to this device, accepted even if not newer.

    Raises Rejection with reason empty, oversized, not_json, bad_signature, invalid, other_task,
    not_newer, bad_artifact_topic, too_large or expired (in that order of checks).
    """
    obj = json_object(raw, max_bytes=schemas.MAX_MANIFEST_BYTES, what="retained manifest", error=Rejection)
    version = _offered(obj)
    if obj.get("task") != task:
        # Checked before the signature: another task's manifest on our topic is a misroute, not an attack.
        raise Rejection("other_task", f"manifest for task {obj.get('task')!r}, this agent serves {task!r}", version)
    if public_key is not None:
        try:
            verify_manifest_obj(obj, public_key)
        except (SignatureError, schemas.SchemaError) as exc:
            raise Rejection("bad_signature", str(exc), version) from None
    try:
        m = Manifest.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(x) for x in first["loc"])
        raise Rejection("invalid", f"{loc or '<root>'}: {first['msg']}"[:300], version) from None
    if m.version <= highest and m.version != allowed:
        raise Rejection("not_newer", f"version {m.version} <= highest accepted {highest}", m.version)
    if m.artifact != str(topics.artifact(task, m.version)):
        raise Rejection("bad_artifact_topic", f"artifact {m.artifact!r} is not {topics.artifact(task, m.version)}",
                        m.version)
    if m.size > max_artifact_bytes:
        raise Rejection("too_large", f"declared size {m.size} B > limit {max_artifact_bytes} B", m.version)
    if m.expires <= now:
        raise Rejection("expired", f"manifest expired at {m.expires:.0f}, now {now:.0f}", m.version)
    return m


def check_artifact(data: bytes, m: Manifest) -> None:
    if len(data) > m.size:
        raise Rejection("oversized", f"artifact is {len(data)} B, manifest declares {m.size} B", m.version)
    digest = hashlib.sha256(data).hexdigest()
    if digest != m.sha256:
        raise Rejection("bad_hash", f"sha256 {digest[:16]}... != manifest {m.sha256[:16]}...", m.version)
    # Even a correctly signed model must not make onnxruntime read files beside it.
    try:
        check_onnx_bytes(data)
    except OnnxGuardError as exc:
        raise Rejection(exc.reason, str(exc), m.version) from None
