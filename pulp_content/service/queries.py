"""Count the database statements of each request, on whichever thread's connection runs
them: every statement the process sends, transaction control included.

Django connections are per thread and `sync_to_async` runs the ORM on another thread
than the event loop, so the counting sits in each connection and reads the counter from
a ContextVar, which asgiref copies into that thread. On PostgreSQL it sits in psycopg2's
connection and cursor classes (`database_options`), so it also sees the BEGIN psycopg2
sends by itself and COMMIT/ROLLBACK: what the server log shows. On SQLite a Django
execute wrapper counts statements (BEGIN included) and the connection class counts
COMMIT/ROLLBACK. The download claims' connection (`service.locks`) calls `note` itself;
the invalidation watcher's statements are counted apart (`background_total`).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Counter


@dataclass
class QueryCounter:
    """Queries run while this counter was current; `statements` keeps their SQL."""

    count: int = 0
    statements: list[str] = field(default_factory=list)


_current: ContextVar[QueryCounter | None] = ContextVar("pulp_content_queries", default=None)
_total_lock = threading.Lock()
_total = [0]
_background = [0]
# The same counts for /metrics, made by the first service in this process (see
# `metric_counters`); until then there are none.
_metric_counters: list[Counter] = []


def metric_counters() -> tuple[Counter, ...]:
    """The statement counts as prometheus_client counters (statements; background ones),
    made on first use, from the counts so far: a process that serves no /metrics (a CLI
    command) writes nothing into a metrics directory."""
    with _total_lock:
        if not _metric_counters:
            _metric_counters.extend(
                (
                    Counter(
                        "pulp_content_database_statements",
                        "Statements sent to the database (transaction control included), "
                        "but the background ones.",
                        registry=None,
                    ),
                    Counter(
                        "pulp_content_database_background_statements",
                        "Statements sent to the database for no request (following "
                        "changes for the resolution cache).",
                        registry=None,
                    ),
                )
            )
            _metric_counters[0].inc(_total[0])
            _metric_counters[1].inc(_background[0])
        return tuple(_metric_counters)


def total() -> int:
    """Queries this process has run since it started (for /metrics)."""
    return _total[0]


def background_total() -> int:
    """Queries run for no request: following changes for the resolution cache."""
    return _background[0]


@contextlib.contextmanager
def counting() -> Iterator[QueryCounter]:
    """Count the queries run inside the block, including those on `sync_to_async` threads."""
    counter = QueryCounter()
    token = _current.set(counter)
    try:
        yield counter
    finally:
        _current.reset(token)


def note(sql: str, background: bool = False) -> None:
    """Count one statement: Django's connections do it for every statement they run;
    the download claims' own connection (`service.locks`) and the invalidation watcher's
    (`service.invalidation`, `background`) call this themselves."""
    counter = None if background else _current.get()
    if counter is not None:
        counter.count += 1
        counter.statements.append(sql)
    totals = _background if background else _total
    with _total_lock:
        totals[0] += 1
        if _metric_counters:
            _metric_counters[1 if background else 0].inc()


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    note(sql)
    return execute(sql, params, many, context)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    # PostgreSQL counts in its psycopg2 classes; a wrapper there would count twice.
    if connection.vendor == "sqlite" and _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def install() -> None:
    """Count on every SQLite connection this process opens from now on (PostgreSQL
    connections count themselves, see `database_options`)."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, dispatch_uid="pulp_content_queries")
    for conn in connections.all(initialized_only=True):
        _on_connection_created(None, conn)


def database_options(sqlite: bool) -> dict[str, Any]:
    """Connection OPTIONS that count what Django's execute wrappers cannot see."""
    if sqlite:
        return {"factory": _sqlite_connection()}
    connection_class, cursor_class = _psycopg2_classes()
    # Sessions start in UTC, so Django need not send SET TIME ZONE on each new one.
    return {
        "connection_factory": connection_class,
        "cursor_factory": cursor_class,
        "options": "-c TimeZone=UTC",
    }


_classes: dict[str, Any] = {}


def _psycopg2_classes() -> tuple[type, type]:
    """psycopg2 connection and cursor classes that note every statement they send."""
    if "psycopg2" not in _classes:
        import psycopg2.extensions as ext

        def begins(conn: Any) -> None:
            # psycopg2 sends BEGIN itself before the first statement of a transaction.
            if not conn.autocommit and conn.status == ext.STATUS_READY:
                note("BEGIN")

        class CountingCursor(ext.cursor):  # type: ignore[misc]
            def execute(self, query: Any, vars: Any = None) -> Any:
                begins(self.connection)
                note(str(query))
                return super().execute(query, vars)

            def executemany(self, query: Any, vars_list: Any) -> Any:
                vars_list = list(vars_list)
                begins(self.connection)
                for _ in vars_list:
                    note(str(query))
                return super().executemany(query, vars_list)

        class CountingConnection(ext.connection):  # type: ignore[misc]
            def commit(self) -> None:
                if self.status == ext.STATUS_BEGIN:
                    note("COMMIT")
                super().commit()

            def rollback(self) -> None:
                if self.status == ext.STATUS_BEGIN:
                    note("ROLLBACK")
                super().rollback()

        _classes["psycopg2"] = (CountingConnection, CountingCursor)
    return _classes["psycopg2"]  # type: ignore[no-any-return]


def _sqlite_connection() -> type:
    """A sqlite3 connection class that notes COMMIT and ROLLBACK (Django sends BEGIN
    through a cursor, which the execute wrapper sees)."""
    if "sqlite" not in _classes:
        import sqlite3

        class CountingSqlite(sqlite3.Connection):
            def commit(self) -> None:
                if self.in_transaction:
                    note("COMMIT")
                super().commit()

            def rollback(self) -> None:
                if self.in_transaction:
                    note("ROLLBACK")
                super().rollback()

        _classes["sqlite"] = CountingSqlite
    return _classes["sqlite"]  # type: ignore[no-any-return]
