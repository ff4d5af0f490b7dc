"""A throwaway test CA: a root, server certificates it signs, and PKCS#12 server identities.

Everything is made with ``cryptography`` under the test's own ``tmp_path``; nothing is trusted
system-wide. Keys are ECDSA P-256 (fast to generate, accepted by OpenSSL/native-tls and by
Python's ssl).

PKCS#12 encryption, as checked against ../shared/rathole/rathole (native-tls, OpenSSL 3.0):
it reads both the modern encryption (PBES2, AES-256-CBC, PBKDF2 with HMAC-SHA256, SHA-256 MAC:
``cryptography``'s ``BestAvailableEncryption``) and the "legacy" one (PBES1 with 3DES and a
SHA-1 MAC, what rustls builds and old OpenSSL want). It refuses, with a panic, RC2-40
(``openssl pkcs12 -export -legacy``, or OpenSSL 1.1's default): OpenSSL 3 has RC2 only in
its legacy provider. ``cryptography`` never writes RC2 (ratui does read it).
``legacy=True`` picks the 3DES flavour.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

PKCS12_PASSWORD = "p12-secret"


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True)
class ServerIdentity:
    """Files for one server: its PKCS#12 (with ``password``) and the PEM of the CA that signed
    it (what a client puts in ``trusted_root``)."""

    pkcs12: Path
    password: str
    ca_pem: Path
    cert_pem: Path


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str = "ratui test CA") -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(key, cert)


def issue_server_cert(ca: Issued, hostnames: tuple[str, ...]) -> Issued:
    """A leaf for ``hostnames`` (DNS names and/or IP literals) signed by ``ca``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            sans.append(x509.DNSName(name))
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(hostnames[0]))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))
        .not_valid_after(now + dt.timedelta(days=7))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()),
            critical=False,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(key, cert)


def pkcs12_bytes(
    leaf: Issued, ca: Issued, password: str = PKCS12_PASSWORD, *, legacy: bool = False
) -> bytes:
    if legacy:
        encryption = (
            serialization.PrivateFormat.PKCS12.encryption_builder()
            .kdf_rounds(2048)
            .key_cert_algorithm(pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC)
            .hmac_hash(hashes.SHA1())
            .build(password.encode())
        )
    else:
        encryption = serialization.BestAvailableEncryption(password.encode())
    return pkcs12.serialize_key_and_certificates(
        b"ratui test server", leaf.key, leaf.cert, [ca.cert], encryption
    )


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def server_identity(
    directory: Path,
    hostnames: tuple[str, ...] = ("localhost", "127.0.0.1"),
    *,
    ca: Issued | None = None,
    legacy: bool = False,
    password: str = PKCS12_PASSWORD,
    prefix: str = "server",
) -> ServerIdentity:
    """Write ``<prefix>.p12``, ``<prefix>-ca.pem`` and ``<prefix>.pem`` into ``directory``."""
    ca = ca or make_ca()
    leaf = issue_server_cert(ca, hostnames)
    directory.mkdir(parents=True, exist_ok=True)
    p12 = directory / f"{prefix}.p12"
    p12.write_bytes(pkcs12_bytes(leaf, ca, password, legacy=legacy))
    ca_pem = directory / f"{prefix}-ca.pem"
    ca_pem.write_bytes(pem(ca.cert))
    cert_pem = directory / f"{prefix}.pem"
    cert_pem.write_bytes(pem(leaf.cert))
    return ServerIdentity(p12, password, ca_pem, cert_pem)
