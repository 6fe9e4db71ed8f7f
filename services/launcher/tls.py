"""A local certificate authority and the servers' certificate, made at the first run into WF_DATA_DIR/secrets/tls/
(readable by its owner only; data/ is never committed) and kept for the next runs, as the NATS passwords are:

    ca.pem          the authority's certificate: what clients trust (NATS_CA_FILE, WF_CA_FILE, `wf --ca`, curl --cacert)
    ca-key.pem      its key: signs the server certificate again when that one is missing, near its end, or lacks a name
    server.pem      the certificate every server presents (nats-server, the api, the broadcaster), for the names
                    SERVER_NAMES and SERVER_ADDRESSES: loopback, and the services of compose.yaml
    server-key.pem  its key

The keys are readable by their owner only, the certificates (public by nature) by anyone, in a directory that only
its owner may enter. `python -m services.launcher.tls` makes them (when missing) without starting anything, for
compose, and prints the directory. Delete the directory for a new authority (every client must then trust the new
ca.pem)."""

import ipaddress
import os
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from services.launcher.settings import LauncherSettings

# What the server certificate is valid for: this machine, and the names compose gives its services.
SERVER_NAMES = ("localhost", "nats", "nats-2", "nats-3", "api", "broadcaster")
SERVER_ADDRESSES = ("127.0.0.1", "::1")
CA_VALIDITY = timedelta(days=3650)
SERVER_VALIDITY = timedelta(days=397)
RENEW_BEFORE = timedelta(days=30)  # a server certificate this close to its end is made again at the next run
CLOCK_SKEW = timedelta(minutes=5)  # valid from a little before now: a container's clock may lag
PRIVATE, PUBLIC = 0o600, 0o644  # keys, certificates (the directory is its owner's alone)


def tls_directory(data_dir: Path) -> Path:
    return data_dir / "secrets" / "tls"


@dataclass(frozen=True)
class TlsFiles:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.pem"

    @property
    def ca_key(self) -> Path:
        return self.directory / "ca-key.pem"

    @property
    def cert(self) -> Path:
        return self.directory / "server.pem"

    @property
    def key(self) -> Path:
        return self.directory / "server-key.pem"

    @classmethod
    def load_or_create(cls, directory: Path, now: datetime | None = None) -> "TlsFiles":
        """The files in `directory`: an authority made when there is none, a server certificate made when there is
        none, or when the one there is not the authority's, lacks a name, or ends within RENEW_BEFORE."""
        files, now = cls(Path(directory)), now or datetime.now(UTC)
        files.directory.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # data/secrets/, as nats_users makes it
        if not (files.ca_cert.exists() and files.ca_key.exists()):
            files._make_authority(now)
        if not files._server_certificate_holds(now):
            files._make_server_certificate(now)
        return files

    def _make_authority(self, now: datetime) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "approval-workflows local CA")])
        certificate = (
            _builder(name, name, key.public_key(), now, CA_VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        _write(self.ca_key, _key_pem(key), PRIVATE)
        _write(self.ca_cert, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC)

    def _make_server_certificate(self, now: datetime) -> None:
        authority = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
        authority_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), password=None)
        if not isinstance(authority_key, CertificateIssuerPrivateKeyTypes):
            raise ValueError(f"{self.ca_key}: not a key that can sign certificates")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, SERVER_NAMES[0])])
        alternative_names = [x509.DNSName(dns) for dns in SERVER_NAMES]
        alternative_names += [x509.IPAddress(ipaddress.ip_address(address)) for address in SERVER_ADDRESSES]
        authority_key_id = authority.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        certificate = (
            _builder(name, authority.subject, key.public_key(), now, SERVER_VALIDITY)
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(_key_usage(digital_signature=True), critical=True)
            # clientAuth too: a server may present it to another (nats-server's routes, if they get TLS one day)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                critical=False,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(authority_key_id), False)
            .sign(authority_key, hashes.SHA256())
        )
        _write(self.key, _key_pem(key), PRIVATE)
        _write(self.cert, certificate.public_bytes(serialization.Encoding.PEM), PUBLIC)

    def _server_certificate_holds(self, now: datetime) -> bool:
        if not (self.cert.exists() and self.key.exists()):
            return False
        try:
            certificate = x509.load_pem_x509_certificate(self.cert.read_bytes())
            authority = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            certificate.verify_directly_issued_by(authority)
            names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except (ValueError, TypeError, x509.ExtensionNotFound, InvalidSignature):
            return False
        has_every_name = set(SERVER_NAMES) <= set(names.get_values_for_type(x509.DNSName)) and {
            ipaddress.ip_address(address) for address in SERVER_ADDRESSES
        } <= set(names.get_values_for_type(x509.IPAddress))
        return has_every_name and certificate.not_valid_after_utc - RENEW_BEFORE > now


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key, now: datetime, validity: timedelta
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + validity)
    )


def _key_usage(**allowed: bool) -> x509.KeyUsage:
    usages = (
        "digital_signature",
        "content_commitment",
        "key_encipherment",
        "data_encipherment",
        "key_agreement",
        "key_cert_sign",
        "crl_sign",
        "encipher_only",
        "decipher_only",
    )
    return x509.KeyUsage(**{usage: allowed.get(usage, False) for usage in usages})


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, content: bytes, mode: int) -> None:
    """With `mode` from the moment it exists (a key is never readable by others); in place of the old file at once
    (a rename)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    staged = path.with_name(path.name + ".new")
    staged.unlink(missing_ok=True)  # a leftover of an interrupted run, with whatever mode it had
    with os.fdopen(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode), "wb") as file:
        file.write(content)
    os.replace(staged, path)


if __name__ == "__main__":
    files = TlsFiles.load_or_create(tls_directory(LauncherSettings().data_dir))
    sys.stdout.write(f"{files.directory}\n")
