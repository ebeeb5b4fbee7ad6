"""Open the database for a command: connect, and migrate (SQLite) or insist (PostgreSQL)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from pulp_content.service.config import Settings, configure_django
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
    """Apply pending migrations; returns what was applied."""
    from django.core.management import call_command

    configure_django(settings)
    pending = _reachable(pending_migrations)
    if pending:
        call_command("migrate", verbosity=0, interactive=False)
    return pending


def ready(settings: Settings) -> None:
    """Make the database usable: SQLite migrates itself, PostgreSQL must be migrated."""
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
