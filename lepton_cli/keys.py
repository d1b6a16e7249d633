"""`lepton keys`: the model-signing key pair and the broker's TLS certificates.

    lepton keys init [--dir DIR]                       # Ed25519 model-signing key pair
    lepton keys tls --broker-dir DIR [--name HOST ...] # server CA, device CA, broker cert, empty CRL

The signing private key stays with whoever publishes models (the cloud worker's host);
only the public key goes into device bundles. Nothing here ever overwrites a key.
Keys go to a per-user state directory by default ($XDG_STATE_HOME/lepton, i.e.
~/.local/state/lepton; the cloud worker looks there too), private keys 0600 in directories
0700; a directory inside a git work tree that git does not ignore gets a warning.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lepton_cli.pki import DEFAULT_SERVER_NAMES, BrokerPki, PkiError
from lepton_cli.secure_broker import DYNSEC_FILE, write_dynsec
from shared.security.signing import generate_keypair, key_id, load_public
from shared.security.statedir import exposure_warning, private_dir, state_dir

PRIVATE_NAME, PUBLIC_NAME = "signing.key", "signing.pub"


def default_key_dir() -> Path:
    """Where `keys init` puts the pair; the cloud worker's default signing_key is there too."""
    return state_dir() / "keys"


def warn_exposure(path: Path, what: str) -> None:
    warning = exposure_warning(path, what)
    if warning:
        print(warning, file=sys.stderr)


def signing_paths(directory: Path) -> tuple[Path, Path]:
    return Path(directory) / PRIVATE_NAME, Path(directory) / PUBLIC_NAME


def cmd_init(args: argparse.Namespace) -> int:
    args.dir = args.dir or default_key_dir()
    private, public = signing_paths(args.dir)
    existing = [str(p) for p in (private, public) if p.exists()]
    if existing:
        print(f"error: refusing to overwrite {', '.join(existing)}; a new signing key means every device "
              f"needs the new public key (see docs/SECURITY.md, rotation)", file=sys.stderr)
        return 1
    warn_exposure(Path(args.dir), "the model-signing private key")
    private_dir(Path(args.dir))
    kid = generate_keypair(private, public)
    print(f"model-signing key {kid}\n  private (keep on the publishing host, mode 0600): {private}\n"
          f"  public (goes into every device bundle): {public}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    args.dir = args.dir or default_key_dir()
    _, public = signing_paths(args.dir)
    if not public.exists():
        print(f"error: no public key at {public}: run `lepton keys init --dir {args.dir}`", file=sys.stderr)
        return 1
    print(key_id(load_public(public)))
    return 0


def cmd_tls(args: argparse.Namespace) -> int:
    pki = BrokerPki(Path(args.broker_dir))
    names = tuple(args.name) or DEFAULT_SERVER_NAMES
    warn_exposure(pki.dir, "the broker's CA and server keys")
    try:
        if not pki.exists():
            private_dir(pki.dir)
        if pki.ensure(names):
            print(f"created server CA, device CA, broker certificate for {', '.join(names)} and CRL in {pki.dir}")
            if not (pki.dir / DYNSEC_FILE).exists():
                # secure.conf loads it; with no identity yet it denies everything (provision fills it)
                write_dynsec(pki.dir)
        elif args.reissue_server:
            pki.reissue_server(names)
            print(f"re-issued the broker certificate for {', '.join(names)}; reload mosquitto (SIGHUP)")
        else:
            print(f"{pki.dir} already has a PKI; nothing changed (--reissue-server for a new broker certificate)")
    except PkiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("keys", help="model-signing keys and broker TLS certificates",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="keys_command", metavar="ACTION", required=True)
    i = sub.add_parser("init", help="create the Ed25519 model-signing key pair (never overwrites)")
    i.add_argument("--dir", type=Path, help=f"key directory (default {default_key_dir()})")
    i.set_defaults(func=cmd_init)
    s = sub.add_parser("show", help="print the key id of the model-signing public key")
    s.add_argument("--dir", type=Path, help=f"key directory (default {default_key_dir()})")
    s.set_defaults(func=cmd_show)
    t = sub.add_parser("tls", help="create the broker's CAs, certificate and CRL (idempotent)")
    t.add_argument("--broker-dir", type=Path, required=True, help="broker directory (secure.conf's files)")
    t.add_argument("--name", action="append", default=[],
                   help="host name or IP clients use for the broker (repeatable; default localhost, 127.0.0.1)")
    t.add_argument("--reissue-server", action="store_true", help="replace the broker certificate (new names)")
    t.set_defaults(func=cmd_tls)
