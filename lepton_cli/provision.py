"""`lepton provision`: credentials for one device (or service) and the bundle that carries them.

    lepton keys init                                   # once: the model-signing key pair
    lepton provision cam-1 --host broker.example       # bundle in ~/.local/state/lepton/devices/cam-1
    lepton provision cam-1 --broker-dir /etc/mosquitto/lepton --host broker.example
    lepton provision worker_1 --broker-dir ...         # a service identity (<role>_<name>)
    lepton provision cam-1 --broker-dir ... --revoke   # password removed, certificate on the CRL

Provisioning adds a random password to the broker's password file (mosquitto_passwd),
issues a client certificate with CN=identity from the device CA, regenerates the ACLs from
shared/security/acl.py (DIR/dynsec.json for the dynamic security plugin secure.conf loads, and
DIR/lepton.acl, the same rules as a plain acl_file) and renders DIR/mosquitto.conf from
mosquitto/secure.conf. The bundle holds the agent config (TOML), the server CA, the client
certificate and key and the model-signing PUBLIC key. Restart mosquitto after adding an
identity: the plugin reads dynsec.json only at start. After --revoke a reload (SIGHUP)
refuses new connections and drops live password sessions, but a live TLS session of a
revoked certificate lasts until mosquitto restarts.

Defaults keep the broker files and bundles in the per-user state directory
($XDG_STATE_HOME/lepton, else ~/.local/state/lepton), keys and passwords 0600; a target
inside a git work tree that git does not ignore gets a warning.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import secrets
import shutil
import sys
from pathlib import Path

from lepton_cli.keys import PUBLIC_NAME, default_key_dir, warn_exposure
from lepton_cli.pki import BrokerPki, PkiError, write_private_bytes
from lepton_cli.secure_broker import (
    MTLS_PORT,
    TLS_PASSWORD_PORT,
    CredentialError,
    PasswordFile,
    write_acl,
    write_dynsec,
    write_secure_config,
)
from shared.protocol.topics import DEFAULT_ROOT, TopicError, check_root, check_segment
from shared.security.acl import IdentityError, Role, role_of
from shared.security.signing import SignatureError, key_id, load_public
from shared.security.statedir import private_dir, state_dir

LISTENERS = {"mtls": MTLS_PORT, "tls": TLS_PASSWORD_PORT, "loopback": 1883}


# Per-user state (shared/security/statedir.py): CA keys, passwords and bundles never land in a work tree by default.
def default_broker_dir() -> Path:
    return state_dir() / "broker"


def default_bundles() -> Path:
    return state_dir() / "devices"


def _toml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid TOML basic string


def bundle_toml(identity: str, role: Role, *, root: str, host: str, port: int, listener: str, password: str,
                files: Path, public_key_id: str, task: str | None = None) -> str:
    """The agent/service config. The [mqtt] table is exactly shared.transport.mqtt.MqttSettings."""
    tls = ""
    if listener in ("mtls", "tls"):
        tls = f"\n[mqtt.tls]\nca = {_toml_str(str(files / 'ca.crt'))}\n"
        if listener == "mtls":
            tls += f"cert = {_toml_str(str(files / 'client.crt'))}\nkey = {_toml_str(str(files / 'client.key'))}\n"
    ident_key = "device" if role is Role.DEVICE else "service"
    if role is not Role.DEVICE:
        head = ""
    elif task:
        head = f"task = {_toml_str(task)}\n"
    else:
        head = "# task = \"digits\"   # required by the agent: the task this device serves (topics; the model manifest brings the rest)\n"
    return (
        f"# Lepton {role.value} bundle for {identity!r}, made by `lepton provision` on "
        f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d}.\n"
        "# Holds a password: readable by the agent's user only (0600).\n"
        + ("# The agent also needs a [source] table (edge_agent/config.py), e.g. [source] type = \"camera\".\n"
           if role is Role.DEVICE else "")
        + f"{ident_key} = {_toml_str(identity)}\n"
        f"root = {_toml_str(root)}\n{head}\n"
        "[mqtt]\n"
        f"host = {_toml_str(host)}\n"
        f"port = {port}\n"
        f"username = {_toml_str(identity)}\n"
        f"password = {_toml_str(password)}\n"
        f"{tls}\n"
        "[model]\n"
        f"# Manifests must be signed by this key, id {public_key_id} (pinned: never taken from the broker).\n"
        f"public_key = {_toml_str(str(files / PUBLIC_NAME))}\n"
    )


def _fail(msg: str) -> int:
    print(f"error: {msg}", file=sys.stderr)
    return 2


def revoke(identity: str, broker_dir: Path, root: str) -> int:
    if not broker_dir.is_dir():
        return _fail(f"no broker directory {broker_dir}")
    removed = PasswordFile(broker_dir / "passwd").delete(identity)
    serial = BrokerPki(broker_dir).revoke(identity) if BrokerPki(broker_dir).exists() else None
    write_acl(broker_dir, root)
    write_dynsec(broker_dir, root)
    if not removed and serial is None:
        return _fail(f"{identity!r} has neither a password nor a certificate in {broker_dir}")
    print(f"revoked {identity}: password {'removed' if removed else 'absent'}, certificate "
          f"{f'serial {serial:x} on the CRL' if serial is not None else 'absent'}.\n"
          "Reload mosquitto (SIGHUP): it refuses new connections and drops live password sessions;\n"
          "restart it to drop a live TLS session of a revoked certificate and the identity's role\n"
          "(the dynamic security plugin reads dynsec.json only at start).")
    return 0


def run(args: argparse.Namespace) -> int:
    identity = args.identity
    try:
        role = role_of(identity)
        root = check_root(args.root)
        if args.task is not None:
            check_segment(args.task, "task")
    except (IdentityError, TopicError) as exc:
        return _fail(str(exc))
    broker_dir = Path(args.broker_dir) if args.broker_dir else default_broker_dir()
    try:
        if args.revoke:
            return revoke(identity, broker_dir, root)
        listener = args.listener or ("mtls" if role is Role.DEVICE else "loopback")
        port = args.port or LISTENERS[listener]
        pub_path = Path(args.signing_pub) if args.signing_pub else default_key_dir() / PUBLIC_NAME
        if not pub_path.exists():
            return _fail(f"no model-signing public key at {pub_path}: run `lepton keys init` "
                         "(or pass --signing-pub PATH)")
        public = load_public(pub_path)
        out = Path(args.out) if args.out else default_bundles() / identity
        passwd = PasswordFile(broker_dir / "passwd")
        if not args.force:
            if out.exists() and any(out.iterdir()):
                return _fail(f"{out} exists; --force re-provisions (the old password and certificate stop working)")
            if identity in passwd.users():
                return _fail(f"{identity} is already provisioned in {broker_dir}; --force re-provisions it")
        warn_exposure(broker_dir, "the broker's CA keys and password file")
        warn_exposure(out, f"{identity}'s client key and password")
        if not broker_dir.is_dir():
            private_dir(broker_dir)
        pki = BrokerPki(broker_dir)
        if pki.ensure(tuple(args.name) or (args.host, "localhost", "127.0.0.1")):
            print(f"created the broker PKI in {broker_dir}")
        password = secrets.token_urlsafe(24)
        passwd.set(identity, password)
        cert, key = pki.issue_client(identity, days=args.days)
        acl = write_acl(broker_dir, root)
        dynsec = write_dynsec(broker_dir, root)
        conf = write_secure_config(broker_dir)
        private_dir(out)
        files = Path(args.install_dir) if args.install_dir else out.resolve()
        shutil.copyfile(pki.server_ca, out / "ca.crt")
        (out / "client.crt").write_bytes(cert)
        write_private_bytes(out / "client.key", key)
        shutil.copyfile(pub_path, out / PUBLIC_NAME)
        name = "device.toml" if role is Role.DEVICE else "service.toml"
        write_private_bytes(out / name, bundle_toml(identity, role, root=root, host=args.host, port=port,
                                               listener=listener, password=password, files=files,
                                               public_key_id=key_id(public), task=args.task).encode())
    except (PkiError, CredentialError, SignatureError, OSError, ValueError) as exc:
        return _fail(str(exc))
    print(f"provisioned {role.value} {identity}: bundle {out}/ ({name}, ca.crt, client.crt, client.key, "
          f"{PUBLIC_NAME}); broker files {broker_dir}/ (passwd, {dynsec.name}, {acl.name}, {conf.name}).\n"
          "Restart mosquitto so the new identity's rights take effect (the dynamic security plugin reads\n"
          f"{dynsec.name} only at start; SIGHUP reloads passwords and the CRL, enough for --force rotations).")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("provision", help="credentials and a config bundle for one device or service",
                              description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("identity", metavar="DEVICE",
                   help="device id ([a-z0-9][a-z0-9-]{0,47}) or service identity <role>_<name>")
    p.add_argument("--out", help=f"bundle directory (default {default_bundles()}/DEVICE)")
    p.add_argument("--broker-dir", help=f"broker files: passwd, ACL, CAs, CRL (default {default_broker_dir()})")
    p.add_argument("--signing-pub", help=f"model-signing public key (default {default_key_dir()}/{PUBLIC_NAME})")
    p.add_argument("--host", default="localhost", help="broker host name the bundle connects to")
    p.add_argument("--name", action="append", default=[],
                   help="broker certificate names when the PKI is created (default --host, localhost, 127.0.0.1)")
    p.add_argument("--listener", choices=sorted(LISTENERS),
                   help="mtls (client cert, default for devices), tls (password over TLS), "
                        "loopback (password, same host; default for services)")
    p.add_argument("--port", type=int, help="broker port (default: the listener's port in secure.conf)")
    p.add_argument("--root", default=DEFAULT_ROOT, help=f"topic root for the ACL (default {DEFAULT_ROOT})")
    p.add_argument("--install-dir", help="where the bundle will live on the device, for the paths in the TOML "
                                         "(default: the bundle directory itself)")
    p.add_argument("--task", help="task the device serves (written to the agent config; else left to fill in)")
    p.add_argument("--days", type=int, default=365, help="client certificate lifetime in days")
    p.add_argument("--force", action="store_true", help="re-provision: new password and certificate, old ones revoked")
    p.add_argument("--revoke", action="store_true", help="remove the password and revoke the certificate")
    p.set_defaults(func=run)
