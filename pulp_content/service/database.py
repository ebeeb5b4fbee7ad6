"""Open the database for a command: connect, and migrate (SQLite) or insist (PostgreSQL)."""

from __future__ import annotations

from pulp_content.service.config import Settings, configure_django
from pulp_content.service.errors import InvalidInput


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
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise InvalidInput(f"cannot open the database: {first}") from None
