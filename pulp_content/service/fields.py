"""Model fields whose values are encrypted at rest (service.keyring), transparently for
the ORM; `unseal_text`/`unseal_json` do the same for the raw SQL of the hot path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.db import models

from pulp_content.service.keyring import Keyring, keyring_for, sealed
from pulp_content.service.sealed import refuse_new_key_over_sealed_data


def keyring() -> Keyring:
    """The keyring of this process's settings (configure_django names the key file)."""
    from django.conf import settings

    return keyring_for(Path(settings.PULP_CONTENT_SECRET_KEY_FILE))


def encrypt(plaintext: str) -> str:
    """A token for `plaintext`; the key file is made on first need, but never while
    secrets encrypted with a key this host lacks are in the database."""
    ring = keyring()
    if not ring.exists():
        refuse_new_key_over_sealed_data(ring)
    return ring.encrypt(plaintext)


def unseal_text(value: str | None) -> str | None:
    """The plaintext of an encrypted text column as raw SQL returns it."""
    return keyring().decrypt(value) if sealed(value) else value


def unseal_json(value: Any) -> Any:
    """The value of an encrypted JSON column as raw SQL returns it (SQLite and psycopg2
    hand JSON back as text)."""
    return _opened(json.loads(value) if isinstance(value, str) else value)


def _opened(value: Any) -> Any:
    """A parsed JSON column value: a token's JSON decrypted and parsed, else as it is."""
    return json.loads(keyring().decrypt(value)) if sealed(value) else value


class EncryptedTextField(models.TextField):  # type: ignore[type-arg]
    """Text stored as a Fernet token; NULL and the empty string stay as they are."""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        # What the model holds is always plaintext (from_db_value decrypts).
        return value if value in (None, "") else encrypt(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return unseal_text(value)


class EncryptedJSONField(models.JSONField):  # type: ignore[type-arg]
    """A JSON value stored as the JSON string of a Fernet token of its text; an empty
    value (`{}`, `[]`) stays plain, as it holds no secret."""

    def get_prep_value(self, value: Any) -> Any:
        if value:
            value = encrypt(json.dumps(value))
        return super().get_prep_value(value)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        return _opened(super().from_db_value(value, expression, connection))
