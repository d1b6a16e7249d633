"""Signing keys for manifests. ``lepton keys init`` calls :func:`init_keys`."""

from __future__ import annotations

import os
from pathlib import Path

from shared.security.signing import generate_keypair, key_id, load_private

PRIVATE_NAME = "signing.key"
PUBLIC_NAME = "signing.pub"


def init_keys(directory: str | Path, *, overwrite: bool = False) -> str:
    """Write ``signing.key`` (mode 0600, stays with the worker) and ``signing.pub`` (for the
    agents) into ``directory``; returns the key id. An existing key is kept (its id returned)
    unless ``overwrite``: replacing it would make every deployed agent reject new models."""
    d = Path(directory)
    priv, pub = d / PRIVATE_NAME, d / PUBLIC_NAME
    if priv.exists() and not overwrite:
        return key_id(load_private(priv).public_key())
    d.mkdir(parents=True, exist_ok=True)
    priv.unlink(missing_ok=True)
    pub.unlink(missing_ok=True)
    kid = generate_keypair(priv, pub)
    os.chmod(priv, 0o600)  # touch(mode=) is subject to the umask; make the mode certain
    return kid
