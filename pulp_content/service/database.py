"""Open the database for a command: connect, and migrate (SQLite) or insist (PostgreSQL).

Only `migrate` creates a SQLite database file (and `serve` on a brand-new home). Any
other command on a missing file says so: creating a new, empty one beside a service
that still has the old one open would split the two without a word.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

from pulp_content.service.config import Settings, configure_django, private_dir, sqlite_path
from pulp_content.service.errors import DatabaseUnavailable, InvalidInput

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


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
    if settings.is_sqlite:
        _reachable(restore_change_triggers)
    return pending


def restore_change_triggers() -> None:
    """Put back any change trigger a migration dropped (SQLite only).

    SQLite cannot alter most of a table in place: Django rebuilds it (a new table, the
    rows copied, the old one dropped), and the triggers go with the old table. A rebuilt
    table would then change without telling any worker's resolution cache. Every migration
    runs through here, so whatever it rebuilt gets its triggers again, as migration 0006
    defines them. (PostgreSQL alters tables in place and keeps them.)"""
    import importlib

    from django.db import connection

    generation = importlib.import_module("pulp_content.service.migrations.0006_change_generation")
    with connection.cursor() as cursor:
        for sql in generation.sqlite_triggers():
            cursor.execute(sql.replace("CREATE TRIGGER ", "CREATE TRIGGER IF NOT EXISTS ", 1))


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
        raise InvalidInput(f"cannot open the database: {_first(exc)}") from None


def unit_of_work(work: Callable[P, T]) -> Callable[P, T]:
    """`work` on this thread's database connection, replaced first if it broke.

    Django replaces broken connections only around the requests it handles itself; a
    service thread keeps its connection for ever. So before each call a connection that
    an error left unusable is closed (Django's own check: a round trip only after an
    error), and a call that finds its connection cut (a restarted server,
    pg_terminate_backend) runs once more on a new one, so the first request after a
    restart does not fail either. What is wrapped must be safe to repeat: reads, and
    writes made idempotent in one transaction. No answer at all is DatabaseUnavailable.
    """

    @functools.wraps(work)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        from django.db import InterfaceError, OperationalError, close_old_connections, connection

        close_old_connections()
        for attempt in (1, 2):
            try:
                return work(*args, **kwargs)
            except (OperationalError, InterfaceError) as exc:
                if connection.in_atomic_block:
                    raise  # the outer block owns the connection and decides
                lost = not connection.is_usable()
                if lost:
                    connection.close()
                if lost and attempt == 1:
                    log.info("database connection lost (%s); connecting again", _first(exc))
                    continue
                log.warning("database unavailable: %s", _first(exc))
                raise DatabaseUnavailable(f"database unavailable: {_first(exc)}") from None
        raise AssertionError("unreachable")

    return run


def _first(exc: BaseException) -> str:
    """The first line of an error message (psycopg2's run over several)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else exc.__class__.__name__
