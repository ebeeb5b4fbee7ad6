"""The models and the migrations agree, and relative paths keep byte order."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection

BYTEWISE = (
    "service_publishedartifact",
    "service_publishedmetadata",
    "service_repositoryversioncontent",
)


def test_no_model_change_lacks_a_migration(db: object) -> None:
    """makemigrations --check exits non-zero when a model differs from the migrations."""
    call_command("makemigrations", "service", "--check", "--dry-run", verbosity=0)


def test_relative_paths_use_the_c_collation_on_postgresql(db: object) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite compares text byte by byte and has no C collation")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT table_name, collation_name FROM information_schema.columns"
            " WHERE column_name = 'relative_path' AND table_name = ANY(%s)",
            [list(BYTEWISE)],
        )
        assert dict(cursor.fetchall()) == dict.fromkeys(BYTEWISE, "C")
