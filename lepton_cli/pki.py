"""The broker's small PKI: a server CA, a device CA, the broker certificate and device certificates.

Two CAs on purpose: devices trust only the *server* CA (so a device certificate can never
pose as the broker), and the broker's TLS listener trusts only the *device* CA (so a server
certificate can never log in as a device). Keys are ECDSA P-256 (fast on a Pi, supported by
every OpenSSL mosquitto links); private keys are written 0600. Issued device certificates
are kept under ``issued/`` so ``revoke`` can put their serials on the CRL.

Layout of a broker directory (what secure.conf points at)::

    server-ca.crt server-ca.key   device-ca.crt device-ca.key   device-ca.crl
    server.crt server.key         issued/<identity>.crt         passwd  dynsec.json
    lepton.acl (the same rules as an acl_file, for brokers without the dynsec plugin)
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_SERVER_NAMES = ("localhost", "127.0.0.1")


class PkiError(RuntimeError):
    """A PKI file is missing, would be overwritten, or is not what it should be."""


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def write_private_bytes(path: Path, data: bytes) -> None:
    """Write secret bytes readable by their owner only (created 0600, never widened)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(path, 0o600)


def write_private(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write a PEM private key readable by its owner only (created 0600, never widened)."""
    write_private_bytes(path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lepton"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, days: int = 3650) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(_name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                         data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                         crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def issue(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str, *, server: bool,
          names: tuple[str, ...] = (), days: int = 365, not_before: dt.datetime | None = None,
          not_after: dt.datetime | None = None) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A leaf certificate: serverAuth with SANs for the broker, clientAuth with CN=identity for devices."""
    key = ec.generate_private_key(ec.SECP256R1())
    nb = not_before or (_now() - dt.timedelta(minutes=5))
    na = not_after or (_now() + dt.timedelta(days=days))
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(nb).not_valid_after(na)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                                      data_encipherment=False, key_agreement=True, key_cert_sign=False,
                                      crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
         .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server
                                               else ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
         .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if server:
        sans: list[x509.GeneralName] = []
        for n in names or DEFAULT_SERVER_NAMES:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(n)))
            except ValueError:
                sans.append(x509.DNSName(n))
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return b.sign(ca_key, hashes.SHA256()), key


def make_crl(ca_cert: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, serials: list[int],
             days: int = 3650) -> x509.CertificateRevocationList:
    now = _now()
    b = (x509.CertificateRevocationListBuilder().issuer_name(ca_cert.subject)
         .last_update(now - dt.timedelta(minutes=5)).next_update(now + dt.timedelta(days=days)))
    for s in sorted(set(serials)):
        b = b.add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(s)
                                      .revocation_date(now - dt.timedelta(minutes=1)).build())
    return b.sign(ca_key, hashes.SHA256())


@dataclass(frozen=True)
class BrokerPki:
    """The PKI files of one broker directory."""

    dir: Path

    @property
    def server_ca(self) -> Path:
        return self.dir / "server-ca.crt"

    @property
    def device_ca(self) -> Path:
        return self.dir / "device-ca.crt"

    @property
    def crl(self) -> Path:
        return self.dir / "device-ca.crl"

    @property
    def server_cert(self) -> Path:
        return self.dir / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.dir / "server.key"

    def issued(self, identity: str) -> Path:
        return self.dir / "issued" / f"{identity}.crt"

    @property
    def revoked_list(self) -> Path:
        return self.dir / "revoked.txt"

    def exists(self) -> bool:
        return all(p.exists() for p in (self.server_ca, self.device_ca, self.crl, self.server_cert, self.server_key))

    def ensure(self, server_names: tuple[str, ...] = DEFAULT_SERVER_NAMES, days: int = 3650) -> bool:
        """Create both CAs, the broker certificate and an empty CRL if missing; True if created."""
        if self.exists():
            return False
        if any(p.exists() for p in (self.server_ca, self.device_ca)):
            raise PkiError(f"{self.dir} holds a partial PKI; move it away or complete it by hand")
        self.dir.mkdir(parents=True, exist_ok=True)
        sca, sca_key = make_ca("Lepton server CA", days)
        dca, dca_key = make_ca("Lepton device CA", days)
        write_private(self.dir / "server-ca.key", sca_key)
        write_private(self.dir / "device-ca.key", dca_key)
        self.server_ca.write_bytes(cert_pem(sca))
        self.device_ca.write_bytes(cert_pem(dca))
        self.crl.write_bytes(make_crl(dca, dca_key, []).public_bytes(serialization.Encoding.PEM))
        self.reissue_server(server_names)
        return True

    def _load(self, which: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        try:
            cert = x509.load_pem_x509_certificate((self.dir / f"{which}.crt").read_bytes())
            key = serialization.load_pem_private_key((self.dir / f"{which}.key").read_bytes(), password=None)
        except FileNotFoundError as exc:
            raise PkiError(f"missing {exc.filename}: run `lepton keys tls --broker-dir {self.dir}`") from None
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def reissue_server(self, server_names: tuple[str, ...], days: int = 825) -> None:
        """A new broker certificate (e.g. for another host name); reload the broker with SIGHUP."""
        ca, ca_key = self._load("server-ca")
        cert, key = issue(ca, ca_key, server_names[0] if server_names else "localhost", server=True,
                          names=server_names, days=days)
        write_private(self.server_key, key)
        self.server_cert.write_bytes(cert_pem(cert))

    def issue_client(self, identity: str, days: int = 365, *, not_before: dt.datetime | None = None,
                     not_after: dt.datetime | None = None) -> tuple[bytes, bytes]:
        """Client certificate + key (PEM) with CN=identity, signed by the device CA."""
        ca, ca_key = self._load("device-ca")
        cert, key = issue(ca, ca_key, identity, server=False, days=days, not_before=not_before, not_after=not_after)
        self.issued(identity).parent.mkdir(parents=True, exist_ok=True)
        old = self.issued(identity)
        if old.exists():  # re-provisioning: the previous certificate must stop working
            self._add_revoked(x509.load_pem_x509_certificate(old.read_bytes()).serial_number)
        old.write_bytes(cert_pem(cert))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        return cert_pem(cert), key_pem

    def _add_revoked(self, serial: int) -> None:
        serials = self.revoked_serials() + [serial]
        self.revoked_list.write_text("".join(f"{s}\n" for s in sorted(set(serials))))
        ca, ca_key = self._load("device-ca")
        self.crl.write_bytes(make_crl(ca, ca_key, serials).public_bytes(serialization.Encoding.PEM))

    def revoked_serials(self) -> list[int]:
        if not self.revoked_list.exists():
            return []
        return [int(x) for x in self.revoked_list.read_text().split()]

    def revoke(self, identity: str) -> int | None:
        """Put the identity's current certificate on the CRL; returns its serial (None if none issued)."""
        path = self.issued(identity)
        if not path.exists():
            return None
        serial = x509.load_pem_x509_certificate(path.read_bytes()).serial_number
        self._add_revoked(serial)
        path.rename(path.with_suffix(".revoked"))
        return serial
