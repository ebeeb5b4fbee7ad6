"""Count the database queries of each request, on whichever thread's connection runs them.

Django connections are per thread and `sync_to_async` runs the ORM on another thread
than the event loop, so the wrapper goes on every connection as it is created and
reads the counter from a ContextVar, which asgiref copies into that thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass
class QueryCounter:
    """Queries run while this counter was current; `statements` keeps their SQL."""

    count: int = 0
    statements: list[str] = field(default_factory=list)


_current: ContextVar[QueryCounter | None] = ContextVar("pulp_content_queries", default=None)
_total_lock = threading.Lock()
_total = [0]
_background = [0]


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
    if background:
        with _total_lock:
            _background[0] += 1
        return
    counter = _current.get()
    if counter is not None:
        counter.count += 1
        counter.statements.append(sql)
    with _total_lock:
        _total[0] += 1


def _count(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any) -> Any:
    note(sql)
    return execute(sql, params, many, context)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if _count not in connection.execute_wrappers:
        connection.execute_wrappers.append(_count)


def install() -> None:
    """Wrap every database connection this process opens from now on."""
    from django.db import connections
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection_created, dispatch_uid="pulp_content_queries")
    for conn in connections.all(initialized_only=True):
        _on_connection_created(None, conn)
