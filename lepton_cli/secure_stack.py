"""`lepton up --secure`: the same stack on mosquitto/secure.conf, with everything made on the fly.

Under ``RUN/secure/``: a fresh PKI (server CA, device CA, broker certificate, CRL; lepton_cli/pki.py),
one identity per service and device in the broker's password file, a client certificate per
device, and the dynamic-security ACLs generated from shared/security/acl.py. The broker runs the real
secure.conf (rendered for that directory) on free loopback ports: services log in with their
password on the loopback listener, agents with their client certificate over mutual TLS. The
labeller and the live view have identities of their own; ``monitor_2`` is left for the user.
Every private key and password file is 0600 and lives only in the run directory.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lepton_cli.pki import BrokerPki, write_private_bytes
from lepton_cli.secure_broker import PasswordFile, SecureBroker, write_acl, write_dynsec

# One identity per connection: the broker uses the username as the client id.
SERVICES = {"worker": "worker_1", "bridge": "bridge_1", "bridge-bulk": "bridge_1-bulk", "labeller": "labeller_1",
            "watcher": "monitor_1", "user": "monitor_2", "console": "console_1"}


@dataclass
class SecureAccess:
    """Credentials and listeners of a secure run; hands each process its [mqtt] settings."""

    dir: Path
    root: str
    devices: list[str]
    passwords: dict[str, str] = field(default_factory=dict)
    broker: SecureBroker | None = None

    @property
    def broker_dir(self) -> Path:
        return self.dir / "broker"

    def prepare(self) -> None:
        pki = BrokerPki(self.broker_dir)
        pki.ensure(("localhost", "127.0.0.1"))
        passwd = PasswordFile(self.broker_dir / "passwd")
        for identity in [*SERVICES.values(), *self.devices]:
            self.passwords[identity] = secrets.token_urlsafe(24)
            passwd.set(identity, self.passwords[identity])
        for device in self.devices:
            cert, key = pki.issue_client(device, days=30)
            d = self.device_dir(device)
            d.mkdir(parents=True, exist_ok=True)
            (d / "client.crt").write_bytes(cert)
            write_private_bytes(d / "client.key", key)
        write_acl(self.broker_dir, self.root)
        write_dynsec(self.broker_dir, self.root)
        write_private_bytes(self.user_password_file, (self.passwords[SERVICES["user"]] + "\n").encode())

    def device_dir(self, device: str) -> Path:
        return self.dir / "devices" / device

    @property
    def user_password_file(self) -> Path:
        return self.dir / f"{SERVICES['user']}.password"

    @property
    def server_ca(self) -> Path:
        return BrokerPki(self.broker_dir).server_ca

    def start_broker(self, workdir: Path, port: int | None) -> SecureBroker:
        self.broker = SecureBroker(workdir, self.broker_dir)
        self.broker.port = port
        self.broker.start()
        return self.broker

    def service(self, name: str) -> dict[str, Any]:
        """[mqtt] of a service: its identity and password on the loopback password listener."""
        assert self.broker is not None
        identity = SERVICES[name]
        return {"host": "127.0.0.1", "port": self.broker.port, "username": identity,
                "password": self.passwords[identity]}

    def device(self, device: str) -> dict[str, Any]:
        """[mqtt] of an agent: mutual TLS with its own certificate (CN = device id)."""
        assert self.broker is not None
        d = self.device_dir(device)
        return {"host": "127.0.0.1", "port": self.broker.mtls_port,
                "tls": {"ca": str(self.server_ca), "cert": str(d / "client.crt"), "key": str(d / "client.key")}}

    def bridge_extra(self) -> dict[str, Any]:
        bulk = SERVICES["bridge-bulk"]
        return {"bulk_username": bulk, "bulk_password": self.passwords[bulk]}

    def describe(self) -> dict[str, Any]:
        """For the summary: where things are, never a secret."""
        b = self.broker
        return {"config": str(b.config) if b else None, "broker_dir": str(self.broker_dir),
                "listeners": {"password": b.port, "mtls": b.mtls_port, "tls_password": b.tls_port} if b else {},
                "identities": sorted([*SERVICES.values(), *self.devices])}
