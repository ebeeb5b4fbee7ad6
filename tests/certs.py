"""Certificates for the x509 guard tests: trustme's, and the odd ones trustme cannot make."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def pem_of(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def leaf_pem(issued: trustme.LeafCert) -> str:
    """The client's own certificate, without the chain trustme appends."""
    return issued.cert_chain_pems[0].bytes().decode()


def ca_pem(ca: trustme.CA) -> str:
    return ca.cert_pem.bytes().decode()


Issuer = tuple[x509.Certificate, ec.EllipticCurvePrivateKey]


def issuer_of(ca: trustme.CA) -> Issuer:
    key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return x509.load_pem_x509_certificate(ca.cert_pem.bytes()), key


def signed_by(
    ca: trustme.CA | Issuer,
    usages: list[x509.ObjectIdentifier] | None,
    *,
    is_ca: bool = False,
    days: float = 1,
) -> Issuer:
    """A certificate for CN=alice issued by `ca`, and its key: with these extended key
    usages (None: no extendedKeyUsage extension at all), CA:TRUE when `is_ca`, and valid
    until `days` from now (negative: expired)."""
    issuer, issuer_key = issuer_of(ca) if isinstance(ca, trustme.CA) else ca
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    start, end = now - dt.timedelta(days=3), now + dt.timedelta(days=days)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=is_ca,
                crl_sign=is_ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


CLIENT_AUTH = [ExtendedKeyUsageOID.CLIENT_AUTH]
SERVER_AUTH = [ExtendedKeyUsageOID.SERVER_AUTH]


def self_signed_ca_without_key_usage() -> Issuer:
    """What `openssl req -x509` makes: CA:TRUE and key identifiers, but no keyUsage."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "plain openssl CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def write_key_and_chain(
    directory: Path, name: str, key_pem: bytes, *chain_pems: str | bytes
) -> tuple[Path, Path]:
    """`name.key` and `name.pem` (the certificate, then its intermediates) for curl."""
    key_path, cert_path = directory / f"{name}.key", directory / f"{name}.pem"
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(b"".join(p if isinstance(p, bytes) else p.encode() for p in chain_pems))
    return key_path, cert_path
