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


def test_every_change_trigger_outlives_the_migrations_after_it(db: object) -> None:
    """Found when a later migration added a column to `service_remote`: on SQLite Django
    rebuilt the table and its triggers went with it, so a changed remote reached no
    worker's cache. Every trigger of migration 0006 is there after all migrations."""
    import importlib

    generation = importlib.import_module("pulp_content.service.migrations.0006_change_generation")
    expected = {
        (f"pulp_content_change_{n}", t) for n, (t, *_) in enumerate(generation.ROW_TRIGGERS)
    }
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT tgname, tgrelid::regclass::text FROM pg_trigger"
                " WHERE tgname LIKE 'pulp\\_content\\_change\\_%%'"
            )
        else:
            cursor.execute(
                "SELECT name, tbl_name FROM sqlite_master"
                " WHERE type = 'trigger' AND name LIKE 'pulp_content_change_%'"
            )
        assert set(cursor.fetchall()) == expected
