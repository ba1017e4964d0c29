"""Certificates for Docker on TCP (classic track): a site CA, a server cert per host, a client cert.

Why: the 2016 tutorial left dockerd on plain TCP 2375, where anyone who reaches the port owns
the host; the 2015 classroom deployment used TLS with client certificates instead. hubwizard
does the latter by default. Everything is generated on the admin machine with ``cryptography``
(paramiko already depends on it) and kept in the site's state folder ``.hubwizard/NAME/tls/``
with 0600 keys. The CA key never leaves that folder: hosts only receive their own cert and key,
and the CA certificate to verify peers.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

Names = tuple[str, ...] | list[str]
CA_DAYS = 3650
CERT_DAYS = 825  # what browsers and most tooling accept as the longest leaf lifetime
RENEW_WITHIN_DAYS = 14  # the doctor's warning threshold; apply re-issues below it too

# What each kind of leaf may be used for (its ExtendedKeyUsage). dockerd (Go) refuses a client
# whose certificate lacks clientAuth, so a node's server cert cannot drive another engine:
# root on one node must not own the others (issue 12 item 5). Only the hub's own certs may act
# as a client: "client" (docker CLI, JupyterHub's spawner -> the manager) and "manager"
# (`swarm manage` serves :4000 with it and presents it to the nodes' engines).
SERVER, CLIENT, MANAGER = "server", "client", "manager"
USAGES: dict[str, tuple[x509.ObjectIdentifier, ...]] = {
    SERVER: (ExtendedKeyUsageOID.SERVER_AUTH,),
    CLIENT: (ExtendedKeyUsageOID.CLIENT_AUTH,),
    MANAGER: (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH),
}


@dataclass(frozen=True)
class CertFiles:
    """PEM bytes of one certificate with its key, plus the CA certificate that signed it."""

    ca: bytes
    cert: bytes
    key: bytes




def _write_private(path: Path, data: bytes) -> None:
    """Create with 0600 from the first byte: a key must never be readable by others, even briefly."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(path, 0o600)


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _name(common_name: str, site: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"hubwizard site {site}"),
        x509.NameAttribute(NameOID.COMMON_NAME, common_name),
    ])


class SiteCA:
    """The site's certificate authority, kept in ``folder`` (ca.pem, ca-key.pem)."""

    def __init__(self, folder: Path, site: str) -> None:
        self.folder, self.site = Path(folder), site
        self.cert_path, self.key_path = self.folder / "ca.pem", self.folder / "ca-key.pem"

    def ensure(self) -> bool:
        """Create the CA if it does not exist yet; return True when it was created."""
        if self.cert_path.exists() and self.key_path.exists():
            return False
        key = _new_key()
        name = _name(f"hubwizard {self.site} Docker CA", self.site)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=CA_DAYS))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write_private(self.key_path, _key_pem(key))
        self.cert_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return True

    def _load(self) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        self.ensure()
        cert = x509.load_pem_x509_certificate(self.cert_path.read_bytes())
        key = serialization.load_pem_private_key(self.key_path.read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return cert, key

    def issue(self, common_name: str, *, ips: Names = (), dns: Names = (), role: str = SERVER,
              days: int = CERT_DAYS) -> CertFiles:
        """Sign a new leaf of ``role`` (see USAGES): a server cert (SANs = the host's IPs and
        names), the hub's client cert, or the Swarm manager's cert."""
        ca_cert, ca_key = self._load()
        key = _new_key()
        usages = list(USAGES[role])
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, self.site))
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_now() - dt.timedelta(minutes=5))
            .not_valid_after(_now() + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        )
        sans: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in dict.fromkeys(ips)]
        sans += [x509.DNSName(name) for name in dict.fromkeys(dns)]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        return CertFiles(self.cert_path.read_bytes(), cert.public_bytes(serialization.Encoding.PEM), _key_pem(key))


def _leaf_paths(folder: Path, name: str) -> tuple[Path, Path]:
    return folder / f"{name}-cert.pem", folder / f"{name}-key.pem"


def site_ca(state_dir: str | Path, site_name: str) -> SiteCA:
    """The site's CA: ``tls/`` in the site's state folder ``.hubwizard/NAME`` (the journal's, which
    the engine passes to calls as ``state_dir``). The one place its folder is spelled."""
    return SiteCA(Path(state_dir) / "tls", site_name)


def leaf(ca: SiteCA, name: str, *, ips: Names = (), dns: Names = (), role: str = SERVER) -> CertFiles:
    """The stored cert of ``name`` (a host, "client" or "manager"), issued anew when missing,
    expiring within RENEW_WITHIN_DAYS, not signed by this CA, lacking one of the wanted SANs,
    or allowing other uses than ``role``'s (an older server cert that also allowed clientAuth)."""
    cert_path, key_path = _leaf_paths(ca.folder, name)
    if cert_path.exists() and key_path.exists():
        pem = cert_path.read_bytes()
        ca_pem = ca.cert_path.read_bytes() if ca.cert_path.exists() else b""
        if _still_good(pem, ca_pem, ips, dns) and set(key_usages(pem)) == set(USAGES[role]):
            return CertFiles(ca.cert_path.read_bytes(), pem, key_path.read_bytes())
    common_name = name if role == CLIENT else f"{name} docker"
    files = ca.issue(common_name, ips=ips, dns=dns, role=role)
    _write_private(key_path, files.key)
    cert_path.write_bytes(files.cert)
    return files


def key_usages(pem: bytes) -> list[x509.ObjectIdentifier]:
    """The ExtendedKeyUsage OIDs of a certificate (empty when it has none: any use, for Go)."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    except x509.ExtensionNotFound:
        return []


def allows_client_auth(pem: bytes) -> bool:
    """Whether a certificate can authenticate as a TLS client (dockerd's rule: no EKU, or clientAuth)."""
    usages = key_usages(pem)
    return not usages or ExtendedKeyUsageOID.CLIENT_AUTH in usages or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages


def _still_good(pem: bytes, ca_pem: bytes, ips: Names, dns: Names) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(pem)
        ca_cert = x509.load_pem_x509_certificate(ca_pem)
    except ValueError:
        return False
    if cert.issuer != ca_cert.subject or days_left(pem) < RENEW_WITHIN_DAYS:
        return False
    have_ips, have_dns = san_entries(pem)
    return set(ips) <= set(have_ips) and set(dns) <= set(have_dns)


def san_entries(pem: bytes) -> tuple[list[str], list[str]]:
    """(IP addresses, DNS names) a certificate is valid for."""
    cert = x509.load_pem_x509_certificate(pem)
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return [str(ip) for ip in ext.get_values_for_type(x509.IPAddress)], list(ext.get_values_for_type(x509.DNSName))


def days_left(pem: bytes, now: dt.datetime | None = None) -> float:
    """Days until a PEM certificate expires (negative once it has)."""
    cert = x509.load_pem_x509_certificate(pem)
    return (cert.not_valid_after_utc - (now or _now())).total_seconds() / 86400


def verify_signed_by(pem: bytes, ca_pem: bytes) -> bool:
    """True when ``pem`` was signed by the CA in ``ca_pem`` (signature checked, not just names)."""
    cert = x509.load_pem_x509_certificate(pem)
    ca_cert = x509.load_pem_x509_certificate(ca_pem)
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True
