"""The separate streamer of 2018: resolve the path again, download while streaming.

It has no shared downloads (every request downloads on its own) and looks everything
up with the plain ORM, as the old streamer did; it streams with the same code as the
merged service, so the comparison measures the design, not two download loops.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Hashable

from aiohttp import web
from asgiref.sync import sync_to_async

from pulp_content.service.config import Settings
from pulp_content.service.download import Downloads
from pulp_content.service.errors import UpstreamError
from pulp_content.service.ingest import OrmPersist
from pulp_content.service.keys import SERVED_FROM
from pulp_content.service.legacy.lookup import Missing, find
from pulp_content.service.measured import MeasuredUpstream
from pulp_content.service.metrics import CONTENT_TYPE, Metrics
from pulp_content.service.progress import Progress
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.storage import FileSystemStorage
from pulp_content.service.stream import stream
from pulp_content.service.types import DistributionRef, RemoteRef, RemoteSource
from pulp_content.service.upstream import HttpUpstream

DOWNLOADS = web.AppKey("legacy_downloads", Downloads)
UPSTREAM = web.AppKey("legacy_upstream", MeasuredUpstream)
METRICS = web.AppKey("legacy_metrics", Metrics)
PREFIX = "/streamer/"


def remote_source(path: str) -> RemoteSource | None:
    """What the streamer downloads for `path`, or None when nothing is there."""
    try:
        found = find(path)
    except Missing:
        return None
    ca = found.content_artifact
    if ca is None:
        return None
    refs = []
    for ra in ca.remoteartifact_set.all():
        digests = {"sha256": ra.sha256} if ra.sha256 else {}
        refs.append(
            RemoteRef(
                ra.pk, RemoteConfig.from_model(ra.remote), ra.url, ra.size, digests, ra.failed_at
            )
        )
    if not refs:
        return None
    dist = DistributionRef(found.distribution.name, found.distribution.base_path)
    return RemoteSource(
        path,
        dist,
        "publication",
        found.relative_path,
        ca.pk,
        tuple(refs),
        ca.content.size,
        ca.content.sha256,
    )


async def handle(request: web.Request) -> web.StreamResponse:
    started = time.monotonic()
    src = await sync_to_async(remote_source)(request.match_info["path"])
    if src is None:
        raise web.HTTPNotFound()
    try:
        response = await stream(request, src, request.app[DOWNLOADS])
    except UpstreamError as exc:
        return web.Response(status=504 if exc.timeout else 502, text=f"{exc}\n")
    served_from = request.get(SERVED_FROM, "-")
    seconds = time.monotonic() - started
    request.app[METRICS].request_done(served_from, response.status, seconds, response.body_length)
    return response


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=request.app[METRICS].render(), headers={"Content-Type": CONTENT_TYPE})


class UnsharedDownloads(Downloads):
    """As the 2018 streamer did: every request downloads on its own; nothing is shared
    with other requests or claimed for other processes to follow."""

    def _running(self, key: Hashable) -> Progress | None:
        return None

    def _key(self, src: RemoteSource) -> Hashable:
        return object()  # shared with no other request

    async def written(self, src: RemoteSource) -> int:
        return 0  # no other download's bytes to read from

    def _shared_name(self, src: RemoteSource) -> str | None:
        return None


def create_streamer(settings: Settings) -> web.Application:
    storage = FileSystemStorage(settings.storage_root)  # as in 2018: no shared download claims
    persist = OrmPersist(storage)
    app = web.Application()
    app[METRICS] = Metrics()
    app.router.add_get(PREFIX + "{path:.*}", handle)
    app.router.add_get("/metrics", metrics)

    async def downloads(app: web.Application) -> AsyncIterator[None]:
        app[UPSTREAM] = MeasuredUpstream(HttpUpstream(), app[METRICS])
        app[DOWNLOADS] = UnsharedDownloads(storage, persist, app[UPSTREAM], settings.chunk_size)
        yield
        await app[DOWNLOADS].aclose()
        await app[UPSTREAM].aclose()
        persist.close()

    app.cleanup_ctx.append(downloads)
    return app
