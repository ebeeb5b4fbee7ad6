"""Client certificates for the x509 guard: read what the front web server passed on, and
verify it as a TLS server verifies a client (cryptography's X.509 path validation).

The leaf must be an end-entity certificate (not basicConstraints CA:TRUE) for client
authentication (extendedKeyUsage clientAuth), valid now, and chain through untrusted
intermediates to one of the trusted CA certificates.
"""

from __future__ import annotations

import functools
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from pulp_content.service.errors import InvalidInput

MAX_CHAIN_DEPTH = 4


class Unverified(Exception):
    """The presented certificate does not authenticate a client; the message says why
    (short, no certificate contents: it is sent to the client)."""


@functools.lru_cache(maxsize=64)
def _parse(pem: str) -> tuple[x509.Certificate, ...]:
    return tuple(x509.load_pem_x509_certificates(pem.encode()))


def read_bundle(pem: str, what: str, *, ca: bool) -> str:
    """`pem` if it holds one or more PEM certificates (all CA certificates when `ca`),
    else a one-line error about `what`."""
    try:
        certs = _parse(pem)
    except ValueError:
        raise InvalidInput(f"{what} is not a PEM certificate file") from None
    if ca and not all(_is_ca(cert) for cert in certs):
        raise InvalidInput(f"{what} holds a certificate that is not a CA (basicConstraints)")
    return pem


def verify(presented: str, anchors_pem: str, intermediates_pem: str = "") -> None:
    """Return if `presented` authenticates a client, else raise Unverified.

    `presented` is what the proxy sent: one or more PEM certificates, URL-encoded as nginx's
    $ssl_client_escaped_cert is (a PEM cannot travel in a header as it is); the first is the
    client's, the rest intermediates, which count only as far as they chain to an anchor.
    """
    try:
        leaf, *sent = _parse(unquote(presented))
    except ValueError:
        raise Unverified("the client certificate cannot be read") from None
    if _is_ca(leaf):
        raise Unverified("a CA certificate is not a client certificate")
    if not _for_client_auth(leaf):
        raise Unverified("the client certificate is not for client authentication")
    intermediates = [*sent, *(_parse(intermediates_pem) if intermediates_pem else ())]
    try:
        _verifier(_parse(anchors_pem)).verify(leaf, intermediates)
    except VerificationError:
        raise Unverified("the client certificate does not chain to the trusted CA") from None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _for_client_auth(cert: x509.Certificate) -> bool:
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usages


def _verifier(anchors: tuple[x509.Certificate, ...]) -> ClientVerifier:
    """Built per request: a verifier's clock is fixed when it is built."""
    return (
        PolicyBuilder()
        .store(Store(list(anchors)))
        .max_chain_depth(MAX_CHAIN_DEPTH)
        .extension_policies(ca_policy=_CA_POLICY, ee_policy=_EE_POLICY)
        .build_client_verifier()
    )


def _client_auth_usage(
    policy: Policy, cert: x509.Certificate, usages: x509.ExtendedKeyUsage
) -> None:
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise ValueError("extendedKeyUsage lacks clientAuth")


def _signs_certificates(
    policy: Policy, cert: x509.Certificate, usage: x509.KeyUsage | None
) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage lacks keyCertSign")


# The Web PKI profile, relaxed where private client-certificate CAs commonly differ from
# it (and where it adds nothing to client authentication): a CA made by a plain
# `openssl req -x509` has no keyUsage; a client certificate needs no subjectAltName, and
# trustme marks its subjectAltName critical. Every other check stays: CA:TRUE and path
# length on issuers, CA:FALSE on the leaf, signatures, validity, key sizes.
_CA_POLICY = ExtensionPolicy.webpki_defaults_ca().may_be_present(
    x509.KeyUsage, Criticality.AGNOSTIC, _signs_certificates
)
_EE_POLICY = (
    ExtensionPolicy.webpki_defaults_ee()
    .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None)
    .require_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _client_auth_usage)
)
