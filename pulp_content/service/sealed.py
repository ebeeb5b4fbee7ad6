"""Where the encrypted columns are, and whether any holds a token: plain SQL, no models
(the encrypting fields ask it before making a key, and the models import the fields)."""

from __future__ import annotations

from django.db import connection

from pulp_content.service.keyring import PREFIX, Keyring

# (table, column, JSON?) of every encrypted column; the models declare them with
# service.fields, this list lets plain SQL find their tokens.
SEALED_COLUMNS = (
    ("service_remote", "password", False),
    ("service_remote", "proxy_password", False),
    ("service_remote", "client_key", False),
    ("service_remote", "headers", True),
    ("service_contentguard", "settings", True),
    ("service_servicesecret", "value", False),
)


def token_pattern(is_json: bool) -> str:
    # A JSON column holds the token as a JSON string: text that begins with a quote.
    return ('"' if is_json else "") + PREFIX + "%"


def sealed_columns() -> list[tuple[str, str, bool]]:
    """SEALED_COLUMNS of the tables the database has now: a migration that encrypts
    (0004) runs before the tables of later ones exist."""
    tables = set(connection.introspection.table_names())
    return [sealed for sealed in SEALED_COLUMNS if sealed[0] in tables]


def sealed_data_exists() -> bool:
    """Whether any encrypted column holds a token (queries only when the key is missing:
    never on the hot path)."""
    columns = sealed_columns()
    probes = " UNION ALL ".join(
        f"SELECT 1 FROM (SELECT 1 FROM {table} WHERE CAST({column} AS TEXT) LIKE %s LIMIT 1) t"
        for table, column, _ in columns
    )
    with connection.cursor() as cursor:
        cursor.execute(probes, [token_pattern(j) for _, _, j in columns])
        return cursor.fetchone() is not None


def refuse_new_key_over_sealed_data(ring: Keyring) -> None:
    """Making a key now would split the secrets between two keys: refuse if tokens exist."""
    if sealed_data_exists():
        ring.keys()  # raises the one-line "key file is missing" error
