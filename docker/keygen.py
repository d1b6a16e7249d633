"""Create the model-signing key pair once (the compose `keygen` service); safe to rerun.

    python keygen.py --private /var/lib/lepton/keys/signing.key --public /run/lepton-pub/signing.pub

The private key stays in the worker's volume; only the public key goes to the volume the
agents mount read-only. On a rerun an existing private key is kept and the public key is
(re)derived from it, so a lost or stale public-key volume heals itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from shared.security.signing import SignatureError, generate_keypair, key_id, load_private


def public_pem(private_path: Path) -> bytes:
    return load_private(private_path).public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ensure_keypair(private_path: Path, public_path: Path) -> tuple[str, str]:
    """Returns (key id, what happened: created | kept | public rewritten)."""
    if not private_path.exists():
        public_path.unlink(missing_ok=True)
        return generate_keypair(private_path, public_path), "created"
    pem = public_pem(private_path)
    kid = key_id(load_private(private_path).public_key())
    if public_path.exists() and public_path.read_bytes() == pem:
        return kid, "kept"
    public_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = public_path.with_name(public_path.name + ".tmp")
    tmp.write_bytes(pem)
    tmp.replace(public_path)  # atomic: an agent starting now reads the old or the new file, never half
    return kid, "public rewritten"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--private", type=Path, required=True, help="private key (PEM, mode 0600)")
    p.add_argument("--public", type=Path, required=True, help="public key (PEM) for the agents")
    args = p.parse_args(argv)
    try:
        kid, what = ensure_keypair(args.private, args.public)
    except (OSError, ValueError, SignatureError) as exc:
        print(f"keygen failed: {exc}", file=sys.stderr)
        return 1
    print(f"signing key {kid}: {what} ({args.private}, {args.public})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
