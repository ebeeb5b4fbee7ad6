"""Typed keys of what the application holds."""

from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

from aiohttp import web

from pulp_content.service.cache import CachedLocator
from pulp_content.service.config import Settings
from pulp_content.service.download import Downloads
from pulp_content.service.filecache import SmallFiles
from pulp_content.service.metrics import Metrics
from pulp_content.service.missing import MissingUpstream
from pulp_content.service.passwords import Passwords
from pulp_content.service.peers import Peers
from pulp_content.service.progress import Persist
from pulp_content.service.revalidate import Revalidations
from pulp_content.service.storage import Storage
from pulp_content.service.types import LocalArtifact
from pulp_content.service.upstream import Upstream
from pulp_content.service.usage import Usage


class StoredAnswers(Protocol):
    """How stored artifacts are answered when they live in a bucket (service.bucket)."""

    async def serve(
        self, request: web.BaseRequest, hit: LocalArtifact, files: SmallFiles | None = None
    ) -> web.StreamResponse: ...


SETTINGS = web.AppKey("settings", Settings)
STORAGE: web.AppKey[Storage] = web.AppKey("storage")
UPSTREAM: web.AppKey[Upstream] = web.AppKey("upstream")
PERSIST: web.AppKey[Persist] = web.AppKey("persist")
DOWNLOADS = web.AppKey("downloads", Downloads)
# The artifacts this worker served since it last wrote their last use (service.usage).
USAGE = web.AppKey("usage", Usage)
# Revalidations of stale mutable pull-through copies, one per file at a time.
REVALIDATIONS = web.AppKey("revalidations", Revalidations)
# Pull-through files the upstream said it lacks, for their max age (service.missing).
MISSING = web.AppKey("missing", MissingUpstream)
# (method, path, queries) of recent requests: what tests and /metrics read.
QUERY_LOG = web.AppKey("query_log", deque)
# resolve.locate through the resolution cache, off the event loop on a miss (app.locator).
LOCATOR = web.AppKey("locator", CachedLocator)
# What /metrics shows (service.metrics): written as requests end, downloads run, ...
METRICS = web.AppKey("metrics", Metrics)
# The threads that read the database, each on a connection of its own: as many as
# Settings.database_connections leaves beside the writer's, the claims' and the cache's
# invalidation watcher's (app.reader_threads).
READERS = web.AppKey("readers", ThreadPoolExecutor)
# Small stored files in memory (serve), bounded by Settings.file_cache_size; None: off.
FILES: web.AppKey[SmallFiles | None] = web.AppKey("files")
# The S3 client that answers stored artifacts in a bucket; None: storage is a filesystem.
BUCKET: web.AppKey[StoredAnswers | None] = web.AppKey("bucket")
# Reading other hosts' downloads, and being read (service.peers); None: not on this host.
PEERS: web.AppKey[Peers | None] = web.AppKey("peers")
# Basic-auth password checks: their own thread pool, bounded, limited per client address.
PASSWORDS = web.AppKey("passwords", Passwords)
# Where a request's bytes came from: storage | memory (the small-file cache) | delegated |
# upstream | shared download.
SERVED_FROM = web.RequestKey("served_from", str)
# Body bytes sent straight to the socket (sendfile), which the response does not count.
SENT_DIRECTLY = web.RequestKey("sent_directly", int)
