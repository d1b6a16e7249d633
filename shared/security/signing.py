"""Ed25519 signing of model manifests and of the other messages that change what runs on the fleet.

Manifests, releases, rollout events and rollout commands carry ``key_id`` and ``signature``.
The signature covers the canonical JSON of the message without its ``signature`` field
(sorted keys, no whitespace), so it does not depend on how a producer formatted the bytes
but any change of any value breaks it. Verification works on the received dict, before
the pydantic model is built, so nothing is normalised away between check and use.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from shared.protocol.schemas import Manifest, Msg, canonical, dumps


class SignatureError(ValueError):
    reason = "bad_signature"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new key pair (private key mode 0600); returns the key id."""
    key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    private_path.touch(mode=0o600, exist_ok=False)
    private_path.write_bytes(pem)
    public_path.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                          serialization.PublicFormat.SubjectPublicKeyInfo))
    return key_id(key.public_key())


def load_private(path: Path) -> Ed25519PrivateKey:
    key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an Ed25519 private key")
    return key


def load_public(path: Path) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(Path(path).read_bytes())
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an Ed25519 public key")
    return key


def sign_msg(msg: Msg, private: Ed25519PrivateKey) -> bytes:
    """Return the wire bytes of ``msg`` (a message with ``key_id`` and ``signature``) signed by ``private``."""
    obj = json.loads(dumps(msg.model_copy(update={"key_id": key_id(private.public_key()), "signature": ""})))
    obj.pop("signature")
    sig = private.sign(canonical(obj))
    obj["signature"] = base64.b64encode(sig).decode()
    return json.dumps(obj, separators=(",", ":")).encode()


def sign_manifest(manifest: Manifest, private: Ed25519PrivateKey) -> bytes:
    """Return the wire bytes of ``manifest`` with key_id and signature filled in."""
    return sign_msg(manifest, private)


def verify_obj(obj: dict[str, Any], public: Ed25519PublicKey) -> None:
    """Raise SignatureError unless ``obj`` (the parsed JSON of any signed message) is signed by ``public``."""
    verify_manifest_obj(obj, public)


def verify_manifest_obj(obj: dict[str, Any], public: Ed25519PublicKey) -> None:
    """Raise SignatureError unless ``obj`` (the parsed JSON) carries a valid signature by ``public``."""
    body = dict(obj)
    sig_b64 = body.pop("signature", "")
    if not isinstance(sig_b64, str) or not sig_b64:
        raise SignatureError("message is not signed")
    try:
        sig = base64.b64decode(sig_b64, validate=True)
    except ValueError:
        raise SignatureError("signature is not base64") from None
    if body.get("key_id") != key_id(public):
        raise SignatureError(f"manifest signed by key {body.get('key_id')!r}, trusted key is {key_id(public)}")
    try:
        public.verify(sig, canonical(body))
    except InvalidSignature:
        raise SignatureError("signature does not match the manifest") from None
