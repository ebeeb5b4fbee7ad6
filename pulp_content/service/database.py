"""Open the database for a command: connect, and migrate (SQLite) or insist (PostgreSQL).

Only `migrate` creates a SQLite database file (and `serve` on a brand-new home). Any
other command on a missing file says so: creating a new, empty one beside a service
that still has the old one open would split the two without a word.
"""

from __future__ import annotations

import os
from pathlib import Path

from pulp_content.service.config import Settings, configure_django, private_dir, sqlite_path
from pulp_content.service.errors import InvalidInput


def pending_migrations() -> list[str]:
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    executor = MigrationExecutor(connection)
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _ in plan]


def migrate(settings: Settings) -> list[str]:
    """Create the database if it is missing, and apply pending migrations; returns what
    was applied."""
    from django.core.management import call_command

    prepare_home(settings.home)
    if settings.is_sqlite:
        _create_sqlite(sqlite_path(settings.database_url))
    configure_django(settings)
    pending = _reachable(pending_migrations)
    if pending:
        call_command("migrate", verbosity=0, interactive=False)
    return pending


def ready(settings: Settings, may_create: bool = False) -> None:
    """Make the database usable: SQLite migrates itself, PostgreSQL must be migrated.

    A missing SQLite file is an error, unless `may_create` and the home is brand new
    (no directory, or an empty one): then the database is created (`serve`)."""
    if settings.is_sqlite and not sqlite_path(settings.database_url).exists():
        if may_create and is_new_home(settings.home):
            migrate(settings)
            return
        raise InvalidInput(
            f"no database at {sqlite_path(settings.database_url)}: "
            "run `pulp-content migrate` to create it"
        )
    prepare_home(settings.home)
    configure_django(settings)
    pending = _reachable(pending_migrations)
    if not pending:
        return
    if settings.is_sqlite:
        migrate(settings)
        return
    raise InvalidInput(
        f"the database is not migrated ({len(pending)} pending): run `pulp-content migrate`"
    )


def is_new_home(home: Path) -> bool:
    """No home directory yet, or an empty one: nothing was ever kept there."""
    try:
        return not any(home.iterdir())
    except FileNotFoundError:
        return True
    except OSError:
        return False  # not a directory, or unreadable: prepare_home says which


def prepare_home(home: Path) -> None:
    """The home directory exists (created if need be), or a one-line error."""
    if home.exists() and not home.is_dir():
        raise InvalidInput(f"cannot use {home} as PULP_CONTENT_HOME: not a directory")
    try:
        private_dir(home)  # 0700: the database and the secret key live here
    except OSError as exc:
        raise InvalidInput(f"cannot use {home} as PULP_CONTENT_HOME: {exc.strerror}") from None


def _create_sqlite(path: Path) -> None:
    """An empty database file at `path` (SQLite takes an empty file as an empty database)."""
    if path.exists():
        return
    stale = [p for p in (Path(f"{path}-wal"), Path(f"{path}-shm")) if p.exists()]
    if stale:
        # A write-ahead log without its database: a process may still hold the old one,
        # and SQLite would replay that log into the new file.
        raise InvalidInput(
            f"{stale[0]} is there without its database {path}: stop what still uses it "
            "and remove the -wal and -shm files, or restore the database"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))  # secrets live in it
    except OSError as exc:
        raise InvalidInput(f"cannot create the database {path}: {exc.strerror}") from None


def _reachable(probe):  # type: ignore[no-untyped-def]
    from django.db import OperationalError

    try:
        return probe()
    except OperationalError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InvalidInput(f"cannot open the database: {first}") from None
