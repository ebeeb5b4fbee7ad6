"""A remote's TLS settings as an SSLContext: its CA, its client certificate, validation."""

from __future__ import annotations

import os
import ssl
import tempfile

from pulp_content.service.errors import InvalidInput
from pulp_content.service.remoteconfig import RemoteConfig


def ssl_context(remote: RemoteConfig) -> ssl.SSLContext | bool:
    """What aiohttp's `ssl=` takes for this remote: True (system CAs), False (no
    validation, nothing to present) or a context with its CA and/or client certificate."""
    if not (remote.ca_cert or remote.client_cert):
        return remote.tls_validation
    if remote.tls_validation:
        context = ssl.create_default_context(cadata=remote.ca_cert or None)
    else:
        # No validation of the server, but the client certificate is still presented:
        # an upstream that requires one must get it either way.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if remote.client_cert:
        _load_client_cert(context, remote.client_cert, remote.client_key)
    return context


def _load_client_cert(context: ssl.SSLContext, cert_pem: str, key_pem: str | None) -> None:
    # load_cert_chain reads files only; keep them private and short-lived.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cert.pem")
        with open(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600), "w") as out:
            out.write(cert_pem)
            if key_pem:
                out.write("\n" + key_pem)
        # An encrypted key would make OpenSSL prompt on the terminal; fail instead.
        context.load_cert_chain(path, password=lambda: b"")


def check_tls(remote: RemoteConfig) -> None:
    """InvalidInput unless the remote's CA, client certificate and key load as PEM."""
    for pem in (remote.ca_cert, remote.client_cert, remote.client_key):
        if pem and not pem.isascii():
            raise InvalidInput("a certificate or key is not PEM text (PEM is ASCII)")
    if remote.client_key and not remote.client_cert:
        raise InvalidInput("a client key needs a client certificate (--client-cert)")
    if remote.ca_cert:
        try:
            ssl.create_default_context(cadata=remote.ca_cert)
        except (ssl.SSLError, TypeError, ValueError):
            raise InvalidInput("the CA certificate is not PEM text (--ca-cert)") from None
    if remote.client_cert:
        try:
            _load_client_cert(ssl.create_default_context(), remote.client_cert, remote.client_key)
        except (ssl.SSLError, ValueError) as exc:
            reason = getattr(exc, "reason", None)  # e.g. KEY_VALUES_MISMATCH
            why = f" ({reason.lower().replace('_', ' ')})" if reason else ""
            raise InvalidInput(
                f"the client certificate and key do not load{why}: give PEM text, and an "
                "unencrypted key that matches the certificate (--client-cert, --client-key)"
            ) from None
