"""create_app(settings) -> web.Application: wiring, and nothing at import time."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import hdrs, web
from asgiref.sync import sync_to_async

from pulp_content.service import invalidation
from pulp_content.service.accesslog import one_line_bad_requests
from pulp_content.service.bucket import open_bucket
from pulp_content.service.cache import CachedLocator, ResolutionCache
from pulp_content.service.caching import add_caching_headers
from pulp_content.service.config import Settings
from pulp_content.service.database import unit_of_work
from pulp_content.service.download import Downloads
from pulp_content.service.errors import DatabaseUnavailable, StorageUnavailable
from pulp_content.service.filecache import SmallFiles
from pulp_content.service.handlers import content, peer
from pulp_content.service.ingest import OrmPersist
from pulp_content.service.keyring import SecretKeyError
from pulp_content.service.keys import (
    BUCKET,
    DOWNLOADS,
    FILES,
    LOCATOR,
    METRICS,
    MISSING,
    PASSWORDS,
    PEERS,
    PERSIST,
    QUERY_LOG,
    READERS,
    REVALIDATIONS,
    SETTINGS,
    STORAGE,
    UPSTREAM,
    USAGE,
)
from pulp_content.service.measured import MeasuredUpstream
from pulp_content.service.metrics import CONTENT_TYPE, Metrics
from pulp_content.service.missing import MissingUpstream
from pulp_content.service.passwords import FailureLimit, Passwords
from pulp_content.service.peers import ROUTE, Peers
from pulp_content.service.probes import livez, readyz
from pulp_content.service.resolve import locate
from pulp_content.service.revalidate import Revalidations
from pulp_content.service.secretdata import peer_secret
from pulp_content.service.storage import FileSystemStorage, S3Storage, open_storage
from pulp_content.service.types import Located
from pulp_content.service.upstream import HttpUpstream
from pulp_content.service.usage import Usage

log = logging.getLogger(__name__)


# Connections a worker holds beside its readers': the writer's (ingest), the download
# claims' (locks) and the cache's invalidation watcher's (invalidation).
OTHER_CONNECTIONS = 3
# Seconds at most a stale copy the upstream failed to confirm is served without asking
# again (PULP_CONTENT_FAILURE_COOLDOWN, when shorter): metadata is stale meanwhile.
MAX_REVALIDATION_COOLDOWN = 30.0


def reader_threads(settings: Settings) -> ThreadPoolExecutor:
    """The threads that read the database. Each keeps a connection, so their number is
    the bound: with the OTHER_CONNECTIONS, a worker holds at most
    `settings.database_connections` (rather than the default executor's min(32, CPUs + 4)
    plus those)."""
    count = settings.database_connections - OTHER_CONNECTIONS
    return ThreadPoolExecutor(count, thread_name_prefix="pulp-content-reader")


def locator(settings: Settings, readers: ThreadPoolExecutor | None) -> CachedLocator:
    """`locate` through the resolution cache; a miss runs it off the event loop: on the
    reader threads (PostgreSQL), each with its own connection, so requests wait on a
    networked database side by side instead of queueing behind one connection; or (None:
    SQLite, which answers in microseconds and is fastest on one thread) on asgiref's one
    thread."""
    if readers is None:
        run = sync_to_async(unit_of_work(locate), thread_sensitive=True)
    else:
        run = sync_to_async(unit_of_work(locate), thread_sensitive=False, executor=readers)
    prefix = settings.content_prefix

    async def located(raw_path: str, query_string: str) -> Located:
        return await run(raw_path, prefix, query_string)

    cache = ResolutionCache(settings.cache_size, settings.negative_cache_size)
    return CachedLocator(located, cache)


def create_app(settings: Settings) -> web.Application:
    """The merged content service: content under the prefix, nothing else at the root."""
    one_line_bad_requests()
    app = web.Application()
    app[SETTINGS] = settings
    app[STORAGE] = open_storage(
        settings, serving=True
    )  # download claims: flocks, or advisory locks on PG
    app[READERS] = reader_threads(settings)
    app[LOCATOR] = locator(settings, None if settings.is_sqlite else app[READERS])
    persist = OrmPersist(app[STORAGE], app[READERS], app[LOCATOR].cache.drop_states)
    app[PERSIST] = persist
    app[USAGE] = Usage(persist.write_use, settings.last_used_interval)
    app[QUERY_LOG] = deque(maxlen=1000)
    app[FILES] = SmallFiles(settings.file_cache_size) if settings.file_cache_size else None
    prefix = settings.content_prefix
    app[METRICS] = Metrics()
    app[LOCATOR].cache.report_to(app[METRICS].cache_event)
    app.router.add_get(prefix.rstrip("/"), content)
    app.router.add_get(prefix + "{path:.*}", content)
    # Beside the content prefix, never inside it: no base path can shadow them. Named, so
    # the request metrics leave them out (OWN_ROUTES).
    app.router.add_get("/metrics", metrics, name="metrics")
    app.router.add_get("/livez", livez, name="livez")
    app.router.add_get("/readyz", readyz, name="readyz")
    app.router.add_get("/health", readyz, name="health")  # the name it had before /readyz
    app.router.add_get(ROUTE, peer, name="peer")  # another host reads a download (peers)
    app.cleanup_ctx.append(_readers)  # first in, last out: after every save and claim
    app.cleanup_ctx.append(_bucket)
    app.cleanup_ctx.append(_peers)
    app.cleanup_ctx.append(_upstream)
    app.cleanup_ctx.append(_usage)  # written before the writer thread stops
    app.cleanup_ctx.append(_passwords)
    app.cleanup_ctx.append(_invalidation)
    app.on_startup.append(_sweep)
    app.on_response_prepare.append(add_caching_headers)
    return app


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text for the whole service, whichever worker answers (service.metrics)."""
    body = await asyncio.to_thread(request.app[METRICS].render)  # it reads files
    return web.Response(body=body, headers={hdrs.CONTENT_TYPE: CONTENT_TYPE})


async def _readers(app: web.Application) -> AsyncIterator[None]:
    yield
    app[READERS].shutdown(wait=True)


async def _upstream(app: web.Application) -> AsyncIterator[None]:
    app[UPSTREAM] = MeasuredUpstream(HttpUpstream(), app[METRICS])
    settings = app[SETTINGS]
    app[DOWNLOADS] = Downloads(
        app[STORAGE],
        app[PERSIST],
        app[UPSTREAM],
        settings.chunk_size,
        cooldown=settings.failure_cooldown,
        metrics=app[METRICS],
        peers=app[PEERS],
    )
    refresh = app[PERSIST]
    assert isinstance(refresh, OrmPersist)  # the database side of revalidations too
    app[REVALIDATIONS] = Revalidations(
        app[STORAGE],
        app[UPSTREAM],
        refresh,
        settings.chunk_size,
        offline=settings.offline,
        failure_cooldown=min(settings.failure_cooldown, MAX_REVALIDATION_COOLDOWN),
    )
    app[MISSING] = MissingUpstream()
    if settings.offline:
        log.warning("offline: no upstream is contacted; stored copies are served as they are")
    yield
    await app[REVALIDATIONS].aclose()
    await app[DOWNLOADS].aclose()
    await app[UPSTREAM].aclose()
    app[PERSIST].close()
    app[STORAGE].close()  # every download has ended: no claim is left


async def _peers(app: web.Application) -> AsyncIterator[None]:
    """Reading other hosts' downloads (service.peers): for a bucket on PostgreSQL, where
    hosts share no disk. Without the shared secret (a key file that cannot open it),
    each host downloads for itself, as said once here."""
    settings = app[SETTINGS]
    app[PEERS] = None
    if settings.is_sqlite or app[STORAGE].local:
        yield
        return
    load = sync_to_async(unit_of_work(peer_secret), thread_sensitive=False)
    try:
        app[PEERS] = Peers(settings.peer_url, await load())
    except (DatabaseUnavailable, SecretKeyError) as exc:
        log.warning("hosts will not read each other's downloads: %s", exc)
    yield


async def _bucket(app: web.Application) -> AsyncIterator[None]:
    """The S3 client that answers stored artifacts, when they live in a bucket."""
    storage = app[STORAGE]
    if not isinstance(storage, S3Storage):
        app[BUCKET] = None
        yield
        return
    async with open_bucket(storage, app[SETTINGS].storage_redirect) as bucket:
        app[BUCKET] = bucket
        yield


async def _usage(app: web.Application) -> AsyncIterator[None]:
    """Write when artifacts were served every interval, and what is left at shutdown."""
    app[USAGE].start()
    yield
    await app[USAGE].aclose()


async def _passwords(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    limit = FailureLimit(settings.auth_failure_limit, settings.auth_failure_window)
    app[PASSWORDS] = Passwords(limit, hashed=app[METRICS].password_hashed)
    yield
    app[PASSWORDS].close()


async def _invalidation(app: web.Application) -> AsyncIterator[None]:
    """Follow the database's change generation while serving (the cache is off until it
    is followed, and when it has no room at all)."""
    settings, cache = app[SETTINGS], app[LOCATOR].cache
    if settings.cache_size + settings.negative_cache_size == 0:
        yield
        return
    report = invalidation.LoopReport(cache, asyncio.get_running_loop())
    watcher = invalidation.watcher_for(settings.database_url, report)
    watcher.start()
    yield
    await asyncio.to_thread(watcher.stop)


async def _sweep(app: web.Application) -> None:
    """What killed processes left: partial files, files placed without their rows."""
    from pulp_content.service.audit import sweep

    storage = app[STORAGE]
    # The sweep reads the filesystem layout; another backend would bring its own.
    assert isinstance(storage, FileSystemStorage)
    try:
        sweeping = sync_to_async(unit_of_work(sweep), thread_sensitive=False, executor=app[READERS])
        partials, placed = await sweeping(storage)
    except DatabaseUnavailable:  # logged with its cause; the next start sweeps
        return
    except StorageUnavailable as exc:  # the bucket: /readyz says so; the next start sweeps
        log.warning("the start-up sweep was left for the next start: %s", exc)
        return
    if partials:
        log.info("removed %d partial downloads left by an earlier run", partials)
    if placed:
        log.info("removed %d files an earlier run placed without saving their rows", placed)
