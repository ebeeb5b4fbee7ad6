"""The x509 guard's verification: only an end-entity client certificate that chains to the
trusted CA authenticates; CA certificates, wrong usages and broken chains do not."""

from __future__ import annotations

from urllib.parse import quote

import pytest
import trustme

from pulp_content.service import clientcert
from pulp_content.service.errors import InvalidInput
from tests.certs import (
    CLIENT_AUTH,
    SERVER_AUTH,
    ca_pem,
    leaf_pem,
    pem_of,
    self_signed_ca_without_key_usage,
    signed_by,
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def refused(presented: str, anchors: str, intermediates: str = "") -> str:
    with pytest.raises(clientcert.Unverified) as caught:
        clientcert.verify(quote(presented), anchors, intermediates)
    return str(caught.value)


def test_an_issued_client_certificate_is_accepted(ca):
    clientcert.verify(quote(leaf_pem(ca.issue_cert("client.example"))), ca_pem(ca))


def test_the_ca_itself_is_refused(ca):
    assert refused(ca_pem(ca), ca_pem(ca)) == "a CA certificate is not a client certificate"


def test_an_intermediate_ca_is_refused(ca):
    intermediate = ca.create_child_ca()
    assert "CA certificate" in refused(ca_pem(intermediate), ca_pem(ca))


def test_a_certificate_claiming_ca_with_client_usage_is_refused(ca):
    cert, _ = signed_by(ca, CLIENT_AUTH, is_ca=True)
    assert "CA certificate" in refused(pem_of(cert), ca_pem(ca))


@pytest.mark.parametrize("usages", [None, SERVER_AUTH], ids=["no-eku", "server-auth-only"])
def test_a_certificate_not_for_client_auth_is_refused(ca, usages):
    cert, _ = signed_by(ca, usages)
    assert "not for client authentication" in refused(pem_of(cert), ca_pem(ca))


def test_a_certificate_from_another_ca_is_refused(ca):
    other = trustme.CA().issue_cert("client.example")
    assert "does not chain" in refused(leaf_pem(other), ca_pem(ca))


def test_an_expired_certificate_is_refused(ca):
    cert, _ = signed_by(ca, CLIENT_AUTH, days=-1)
    assert "does not chain" in refused(pem_of(cert), ca_pem(ca))


def test_a_chain_through_an_intermediate(ca):
    intermediate = ca.create_child_ca()
    leaf = leaf_pem(intermediate.issue_cert("client.example"))
    # The leaf alone does not reach the anchor...
    assert "does not chain" in refused(leaf, ca_pem(ca))
    # ...with the intermediate sent after it, or configured on the guard, it does.
    clientcert.verify(quote(leaf + ca_pem(intermediate)), ca_pem(ca))
    clientcert.verify(quote(leaf), ca_pem(ca), ca_pem(intermediate))
    # An intermediate is never an anchor: trusting only it still needs the real root.
    assert "does not chain" in refused(leaf, ca_pem(trustme.CA()), ca_pem(intermediate))


def test_a_client_certificate_cannot_issue_another(ca):
    """A leaf's key signing a further "client" certificate makes no chain (CA:FALSE)."""
    issued = ca.issue_cert("client.example")
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    leaf = x509.load_pem_x509_certificate(issued.cert_chain_pems[0].bytes())
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), None)
    forged, _ = signed_by((leaf, key), CLIENT_AUTH)  # type: ignore[arg-type]
    message = refused(pem_of(forged) + pem_of(leaf), ca_pem(ca))
    assert "does not chain" in message


def test_a_plain_openssl_ca_without_key_usage():
    root = self_signed_ca_without_key_usage()
    cert, _ = signed_by(root, CLIENT_AUTH)
    clientcert.verify(quote(pem_of(cert)), pem_of(root[0]))


def test_unreadable_input_is_refused(ca):
    assert refused("garbage", ca_pem(ca)) == "the client certificate cannot be read"


def test_guard_settings_take_ca_certificates_only(ca):
    assert clientcert.read_bundle(ca_pem(ca), "--ca-cert", ca=True)
    with pytest.raises(InvalidInput, match="not a CA"):
        clientcert.read_bundle(leaf_pem(ca.issue_cert("x.example")), "--ca-cert", ca=True)
    with pytest.raises(InvalidInput, match="not a PEM certificate"):
        clientcert.read_bundle("nope", "--ca-cert", ca=True)
