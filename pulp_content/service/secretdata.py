"""The encrypted columns of the database: whether any hold a token, encrypting the
plaintext left from before, and re-encrypting everything under a new key."""

from __future__ import annotations

import secrets

from cryptography.fernet import Fernet
from django.db import IntegrityError, connection, transaction

from pulp_content.service.keyring import Keyring, SecretKeyError, write_keys
from pulp_content.service.sealed import sealed_columns, sealed_data_exists, token_pattern

REMOTE_SECRETS = ("password", "proxy_password", "client_key", "headers")
PEER_SECRET = "peer"  # signs the requests of one host for another's download (service.peers)


def encrypt_all() -> int:
    """Write every secret again, so each is a token under the key file's first key (the
    fields encrypt on save): plaintext from before encryption, and tokens of older keys.
    Returns how many rows were written."""
    from pulp_content.service.models import ContentGuard, Remote, ServiceSecret

    written = 0
    with transaction.atomic():
        for remote in Remote.objects.select_for_update().order_by("pk"):
            # update_fields: `updated` stays, the download settings did not change.
            remote.save(update_fields=list(REMOTE_SECRETS))
            written += 1
        for guard in ContentGuard.objects.select_for_update().order_by("pk"):
            guard.save(update_fields=["settings"])
            written += 1
        for secret in ServiceSecret.objects.select_for_update().order_by("pk"):
            secret.save(update_fields=["value"])  # the hosts' own (service.peers)
            written += 1
    return written


def rotate(ring: Keyring) -> int:
    """Re-encrypt every secret under a new key and make it the only key in the file.

    Crash-safe: the new key is first added in front of the old ones (every token still
    decrypts), the rows are re-encrypted in one transaction, then the old keys go.
    Returns how many rows were re-encrypted."""
    old: list[bytes] = []
    ring.forget()
    if ring.exists() or sealed_data_exists():
        ring.keys()  # a missing or unreadable key file is a one-line error, here
        old = [key.encode() for key in ring.path.read_text().split()]
    new = Fernet.generate_key()
    write_keys(ring.path, [new, *old])
    ring.forget()
    try:
        written = encrypt_all()
    except SecretKeyError:
        # Some token decrypts with none of the keys: leave the file as it was.
        if old:
            write_keys(ring.path, old)
        else:
            ring.path.unlink()
        ring.forget()
        raise
    write_keys(ring.path, [new])
    ring.forget()
    return written


def verify_key() -> None:
    """Fail now, in one line, when the stored secrets cannot be decrypted (the key file is
    missing, unreadable or another one), rather than at the first download."""
    from pulp_content.service.fields import unseal_json, unseal_text

    with connection.cursor() as cursor:
        for table, column, is_json in sealed_columns():
            cursor.execute(
                f"SELECT {column} FROM {table} WHERE CAST({column} AS TEXT) LIKE %s LIMIT 1",
                [token_pattern(is_json)],
            )
            row = cursor.fetchone()
            if row is not None:
                unseal_json(row[0]) if is_json else unseal_text(row[0])
                return


def peer_secret() -> bytes:
    """The secret the service's hosts share (service.peers), made by whichever host
    needs it first."""
    from pulp_content.service.models import ServiceSecret

    row = ServiceSecret.objects.filter(name=PEER_SECRET).first()
    if row is None:
        try:
            with transaction.atomic():
                row = ServiceSecret.objects.create(name=PEER_SECRET, value=secrets.token_hex(32))
        except IntegrityError:  # another host made it meanwhile
            row = ServiceSecret.objects.get(name=PEER_SECRET)
    return str(row.value).encode()
