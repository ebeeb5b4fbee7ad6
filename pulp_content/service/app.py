"""create_app(settings) -> web.Application: wiring, and nothing at import time."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web
from asgiref.sync import sync_to_async

from pulp_content.service.accesslog import one_line_bad_requests
from pulp_content.service.config import Settings
from pulp_content.service.database import unit_of_work
from pulp_content.service.download import Downloads
from pulp_content.service.errors import DatabaseUnavailable
from pulp_content.service.handlers import content
from pulp_content.service.ingest import OrmPersist
from pulp_content.service.keys import (
    COUNTERS,
    DOWNLOADS,
    PASSWORDS,
    PERSIST,
    QUERY_LOG,
    RESOLVER,
    SETTINGS,
    STORAGE,
    UPSTREAM,
)
from pulp_content.service.metrics import Counters
from pulp_content.service.passwords import FailureLimit, Passwords
from pulp_content.service.probes import livez, readyz
from pulp_content.service.resolve import resolve
from pulp_content.service.storage import FileSystemStorage, open_storage
from pulp_content.service.types import Resolution
from pulp_content.service.upstream import HttpUpstream

log = logging.getLogger(__name__)


def resolver(concurrent: bool) -> Callable[..., Awaitable[Resolution]]:
    """`resolve` off the event loop. Concurrent: each executor thread keeps its own
    connection, so requests wait on a networked database side by side instead of queueing
    behind one connection; SQLite answers in microseconds and is fastest on one thread."""
    return sync_to_async(unit_of_work(resolve), thread_sensitive=not concurrent)


def create_app(settings: Settings) -> web.Application:
    """The merged content service: content under the prefix, nothing else at the root."""
    one_line_bad_requests()
    app = web.Application()
    app[SETTINGS] = settings
    app[STORAGE] = open_storage(settings)  # download claims: flocks, or advisory locks on PG
    app[PERSIST] = OrmPersist(app[STORAGE])
    app[QUERY_LOG] = deque(maxlen=1000)
    app[RESOLVER] = resolver(concurrent=not settings.is_sqlite)
    prefix = settings.content_prefix
    app[COUNTERS] = Counters("merged")
    app.router.add_get(prefix.rstrip("/"), content)
    app.router.add_get(prefix + "{path:.*}", content)
    # Beside the content prefix, never inside it: no base path can shadow them.
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/livez", livez)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/health", readyz)  # the name it had before /readyz
    app.cleanup_ctx.append(_upstream)
    app.cleanup_ctx.append(_passwords)
    app.on_startup.append(_sweep)
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text: requests, database queries, upstream requests, bytes sent."""
    counters = request.app[COUNTERS]
    counters.upstream_requests = request.app[UPSTREAM].requests
    counters.password_hashes = request.app[PASSWORDS].hashes
    counters.password_hash_iterations = request.app[PASSWORDS].hash_iterations
    return web.Response(text=counters.render(), content_type="text/plain")


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    app[UPSTREAM] = HttpUpstream()
    settings = app[SETTINGS]
    app[DOWNLOADS] = Downloads(
        app[STORAGE],
        app[PERSIST],
        app[UPSTREAM],
        settings.chunk_size,
        cooldown=settings.failure_cooldown,
    )
    yield
    await app[DOWNLOADS].aclose()
    await app[UPSTREAM].aclose()
    app[PERSIST].close()
    app[STORAGE].locks.close()  # every download has ended: no claim is left


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limit = FailureLimit(settings.auth_failure_limit, settings.auth_failure_window)
    app[PASSWORDS] = Passwords(limit)
    yield
    app[PASSWORDS].close()


async def _sweep(app: web.Application) -> None:
    """What killed processes left: partial files, files placed without their rows."""
    from pulp_content.service.audit import sweep

    storage = app[STORAGE]
    # The sweep reads the filesystem layout; another backend would bring its own.
    assert isinstance(storage, FileSystemStorage)
    try:
        partials, placed = await sync_to_async(unit_of_work(sweep), thread_sensitive=False)(storage)
    except DatabaseUnavailable:  # logged with its cause; the next start sweeps
        return
    if partials:
        log.info("removed %d partial downloads left by an earlier run", partials)
    if placed:
        log.info("removed %d files an earlier run placed without saving their rows", placed)
