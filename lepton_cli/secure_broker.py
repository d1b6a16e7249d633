"""A broker directory for mosquitto/secure.conf: passwords, the generated ACLs, the rendered config.

The broker enforces the rules through the dynamic security plugin (``dynsec.json``, generated
by ``shared.security.acl.render_dynsec``: SUBSCRIBE outside the rules gets SUBACK 0x87); ``lepton.acl``
is the same rules as a plain ``acl_file`` for brokers without the plugin. Passwords stay in
``passwd`` (mosquitto_passwd), which mosquitto re-reads on SIGHUP; the plugin reads
``dynsec.json`` only at start, so a *new* identity needs a broker restart to get its rights.

``render_secure_config`` is additive to ``shared.transport.broker.render_config``: it points the file
paths of secure.conf at a broker directory and moves the two TLS listeners to given ports;
``shared.transport.broker.Broker`` then rewrites the first (loopback) listener and the persistence
directory as it does for every config, so tests run the real secure.conf on free ports.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from lepton_cli.pki import BrokerPki
from shared.protocol.topics import DEFAULT_ROOT
from shared.security.acl import dynsec_json, render_acl, role_of
from shared.transport.broker import REPO_MOSQUITTO, Broker, free_port, port_in_use

SECURE_CONF = REPO_MOSQUITTO / "secure.conf"
SECURE_DIR = "/etc/mosquitto/lepton/"  # the directory secure.conf names
DYNSEC_PLUGIN = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"  # the path secure.conf names
DYNSEC_FILE = "dynsec.json"
_PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                 "/usr/local/lib/mosquitto_dynamic_security.so", "/usr/lib64/mosquitto_dynamic_security.so",
                 "/opt/homebrew/lib/mosquitto_dynamic_security.so")
MTLS_PORT, TLS_PASSWORD_PORT = 8883, 8884


class CredentialError(RuntimeError):
    """mosquitto_passwd is missing or failed; the message says what to do."""


def mosquitto_passwd() -> str:
    found = shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/local/bin/mosquitto_passwd") if os.access(p, os.X_OK)), None)
    if not found:
        raise CredentialError("mosquitto_passwd is not installed: `sudo apt-get install -y mosquitto`")
    return found


class PasswordFile:
    """The broker's password file, changed only through mosquitto_passwd (salted PBKDF2-SHA512)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _run(self, *args: str) -> None:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        r = subprocess.run([mosquitto_passwd(), *args], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise CredentialError(f"mosquitto_passwd {args[0]} failed: {(r.stderr or r.stdout).strip()}")

    def set(self, user: str, password: str) -> None:
        role_of(user)  # never hand mosquitto_passwd a name the ACL cannot express
        self._run("-b", str(self.path), user, password)

    def delete(self, user: str) -> bool:
        if user not in self.users():
            return False
        self._run("-D", str(self.path), user)
        return True

    def users(self) -> list[str]:
        if not self.path.exists():
            return []
        return [line.split(":", 1)[0] for line in self.path.read_text().splitlines() if ":" in line]


def identities(broker_dir: Path) -> list[str]:
    """Everyone who can log in: password entries plus holders of a current device certificate."""
    names = set(PasswordFile(Path(broker_dir) / "passwd").users())
    issued = Path(broker_dir) / "issued"
    if issued.is_dir():
        names |= {p.stem for p in issued.glob("*.crt")}
    return sorted(names)


def write_acl(broker_dir: Path, root: str = DEFAULT_ROOT) -> Path:
    path = Path(broker_dir) / "lepton.acl"
    path.write_text(render_acl(root, identities(broker_dir)))
    return path


def write_dynsec(broker_dir: Path, root: str = DEFAULT_ROOT) -> Path:
    """The dynamic security plugin's config: one literal role per identity, no passwords."""
    path = Path(broker_dir) / DYNSEC_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(dynsec_json(root, identities(broker_dir)))
    os.replace(tmp, path)  # mosquitto never reads half a file
    return path


def dynsec_plugin() -> str:
    """Where this machine's mosquitto dynamic security plugin is (secure.conf names Debian's
    x86-64 path); the template path when none is found, so mosquitto's own error names it."""
    if os.path.exists(DYNSEC_PLUGIN):
        return DYNSEC_PLUGIN
    for pattern in _PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    return DYNSEC_PLUGIN


def render_secure_config(broker_dir: Path, *, mtls_port: int = MTLS_PORT, tls_password_port: int = TLS_PASSWORD_PORT,
                         tls_host: str | None = None, template: Path = SECURE_CONF) -> str:
    """secure.conf with its files in ``broker_dir`` and the TLS listeners on the given ports
    (bound to ``tls_host`` when given, e.g. 127.0.0.1 in tests; all interfaces otherwise)."""
    text = Path(template).read_text()
    text = text.replace(SECURE_DIR, str(Path(broker_dir).resolve()) + "/")
    text = text.replace(DYNSEC_PLUGIN, dynsec_plugin())
    bind = f" {tls_host}" if tls_host else ""
    for default, port in ((MTLS_PORT, mtls_port), (TLS_PASSWORD_PORT, tls_password_port)):
        text, n = re.subn(rf"(?m)^listener\s+{default}(\s+\S+)?\s*$", f"listener {port}{bind}", text, count=1)
        if n != 1:
            raise ValueError(f"{template} has no `listener {default}` line")
    return text


def write_secure_config(broker_dir: Path, **kw: object) -> Path:
    path = Path(broker_dir) / "mosquitto.conf"
    path.write_text(render_secure_config(broker_dir, **kw))  # type: ignore[arg-type]
    return path


class SecureBroker(Broker):
    """A mosquitto running secure.conf on free loopback ports: ``port`` is the password
    listener, ``mtls_port`` the client-certificate listener, ``tls_port`` TLS + password."""

    def __init__(self, workdir: Path, broker_dir: Path, *, mtls_port: int | None = None,
                 tls_port: int | None = None) -> None:
        self.broker_dir = Path(broker_dir)
        self.mtls_port = mtls_port or free_port()
        self.tls_port = tls_port or free_port()
        super().__init__(workdir, config=Path(workdir) / "secure.rendered.conf")

    def start(self, timeout: float = 10.0) -> SecureBroker:
        if not BrokerPki(self.broker_dir).exists():
            raise FileNotFoundError(f"{self.broker_dir} has no PKI: run `lepton keys tls --broker-dir ...`")
        if not (self.broker_dir / DYNSEC_FILE).exists():
            raise FileNotFoundError(f"{self.broker_dir} has no {DYNSEC_FILE}: run `lepton provision IDENTITY "
                                    f"--broker-dir {self.broker_dir}` (it regenerates it)")
        self.workdir.mkdir(parents=True, exist_ok=True)
        text = render_secure_config(self.broker_dir, mtls_port=self.mtls_port, tls_password_port=self.tls_port,
                                    tls_host=self.host)
        if os.geteuid() == 0:
            # mosquitto started as root drops to the `mosquitto` user before reading the 0600
            # password file and keys written by this (root) process; in production those files
            # are owned by mosquitto instead (docs/SECURITY.md).
            text = "user root\n" + text
        self.config.write_text(text)
        super().start(timeout)
        deadline = time.monotonic() + timeout
        while not all(port_in_use(p, self.host) for p in (self.mtls_port, self.tls_port)):
            if time.monotonic() > deadline or (self.proc is not None and self.proc.poll() is not None):
                raise RuntimeError(f"secure listeners did not open: {self.tail_log()}")
            time.sleep(0.02)
        return self

    def reload(self) -> None:
        """SIGHUP: re-read passwords, the CRL and the server certificate without dropping clients
        (live password sessions are re-checked). The dynamic security plugin keeps the rules it
        read at start: a newly provisioned identity gets its rights after ``restart()``."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGHUP)
