"""request -> resolve -> serve | stream; the one place errors become HTTP answers."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging

from aiohttp import hdrs, web

from pulp_content.service import guards, queries
from pulp_content.service.accesslog import client_of
from pulp_content.service.caching import CACHING, GUARD, Caching, Lifetimes, caching_of
from pulp_content.service.errors import (
    DatabaseUnavailable,
    FileMissing,
    NotResolved,
    RangeError,
    StorageError,
    StorageUnavailable,
    TooLarge,
    UpstreamError,
)
from pulp_content.service.keys import (
    BUCKET,
    DOWNLOADS,
    FILES,
    LOCATOR,
    MISSING,
    PASSWORDS,
    PEERS,
    QUERY_LOG,
    REVALIDATIONS,
    SERVED_FROM,
    SETTINGS,
    STORAGE,
    USAGE,
)
from pulp_content.service.listing import render_listing
from pulp_content.service.peers import HEADER as peer_header
from pulp_content.service.progress import partial_name
from pulp_content.service.proxies import is_trusted_proxy
from pulp_content.service.redact import escape
from pulp_content.service.serve import delegated, serve
from pulp_content.service.stream import stream
from pulp_content.service.types import (
    Forbidden,
    Listing,
    LocalArtifact,
    NotFound,
    Redirect,
    RemoteSource,
    Resolution,
    Unverified,
    refused,
)
from pulp_content.service.urlspace import absolute

log = logging.getLogger(__name__)


CLIENT_CLOSED_REQUEST = 499
RETRY_AFTER = "5"  # seconds: a restarting database is usually back by then
# Guards whose check may take long (an x509 chain verified): checked on a thread. The
# others are checked right here, on the event loop (a basic-auth password is hashed on
# the password pool, never in the check).
SLOW_GUARDS = frozenset({"x509"})


async def content(request: web.Request) -> web.StreamResponse:
    """GET or HEAD anything under the content prefix."""
    with queries.counting() as counter:
        try:
            resolution = await resolve_request(request)
            response = await answer(request, resolution)
        except DatabaseUnavailable:
            response = unavailable()
        except ConnectionError:
            # The client hung up before its answer began (segmented downloaders drop
            # connections they no longer need). Logged with nginx's 499.
            response = web.Response(status=CLIENT_CLOSED_REQUEST, reason="Client Closed Request")
        finally:
            request.app[QUERY_LOG].append((request.method, request.path, counter.count))
    return response


async def peer(request: web.Request) -> web.StreamResponse:
    """Another host reads a download this host runs (service.peers): `path` is what its
    client asked for, `name` the download's name on every host; signed with the secret
    the hosts share. No guard runs: the other host checked its client's."""
    peers = request.app[PEERS]
    name, path = request.query.get("name", ""), request.query.get("path", "")
    if peers is None or not peers.admit(request.headers.get(peer_header, ""), name, path):
        return _text(403, "not a peer of this service")
    with queries.counting() as counter:
        try:
            raw, _, query = path.partition("?")
            src = (await request.app[LOCATOR](raw, query)).resolution
            if (
                isinstance(src, RemoteSource)
                and partial_name(src) == name
                and await request.app[DOWNLOADS].running_here(src)
            ):
                return await answer(request, src)
            return _text(410, "no such download here")
        except NotResolved:
            return _text(410, "no such download here")
        except DatabaseUnavailable:
            return unavailable()
        finally:
            request.app[QUERY_LOG].append((request.method, request.path, counter.count))


async def resolve_request(request: web.Request, afresh: bool = False) -> Resolution:
    """What the path leads to (from the cache when known: no statement, no thread hop;
    `afresh`: from the database), then its distribution's guard, which every request
    passes; a basic-auth password is hashed in between, on the password pool, and the
    guard asked again once it checks out."""
    settings = request.app[SETTINGS]
    from_proxy = is_trusted_proxy(request.remote, settings.trusted_proxies)
    path, _, query = request.raw_path.partition("?")
    locator = request.app[LOCATOR]
    located = await (locator.afresh(path, query) if afresh else locator(path, query))
    request[GUARD] = located.guard
    # request.headers is read-only; only a guard looks at it.
    args = (located, query, request.headers, from_proxy)
    slow = located.guard is not None and located.guard.kind in SLOW_GUARDS
    resolution = await asyncio.to_thread(guards.admit, *args) if slow else guards.admit(*args)
    if not isinstance(resolution, Unverified) or resolution.check is None:
        return resolution
    client = client_of(request, settings.trusted_proxies)  # the address the log shows
    refusal = await request.app[PASSWORDS].verify(resolution.check, client)
    if refusal is not None:
        return refused(resolution.path, resolution.distribution, refusal)
    return guards.admit(*args, resolution.check.cache_key)


async def answer(
    request: web.Request, resolution: Resolution, first: bool = True
) -> web.StreamResponse:
    """Act on a resolution; every domain error is turned into HTTP here. A stored file
    that is gone (reclaimed since the answer was cached) is asked of the database once
    more (`first`): content reclaimed is lazy again, and fetched."""
    try:
        match resolution:
            case LocalArtifact() as hit:
                try:
                    return await _stored(request, hit)
                except FileMissing:
                    if not first:
                        raise
                    return await answer(request, await resolve_request(request, True), False)
            case RemoteSource() as src:
                if request.app[SETTINGS].offline:
                    # RFC 9111 §5.2.1.7 (only-if-cached) answers a miss with a 504 too.
                    return _text(504, "offline: not stored here")
                if request.app[MISSING].known(src):
                    return _text(404, "not found upstream")
                request[CACHING] = _caching(request, src)
                return await stream(request, src, request.app[DOWNLOADS])
            case Listing() as listing:
                request[CACHING] = _caching(request, listing)
                return render_listing(listing)
            case Redirect(location=location):
                origin = request.app[SETTINGS].content_origin
                raise web.HTTPMovedPermanently(absolute(origin, location))
            case Forbidden() as refusal:
                return _refuse(request, refusal)
            case NotFound(reason=why):
                return _text(404, why)
    except NotResolved as exc:
        return _text(404, exc.reason)
    except RangeError as exc:
        # RFC 9110 §14.4: unsatisfiable range -> 416 with bytes */size
        return _text(416, "range not satisfiable", {hdrs.CONTENT_RANGE: f"bytes */{exc.size}"})
    except TooLarge as exc:
        # The upstream is fine; this service will not fetch the file. No URL in the text.
        return _text(502, f"the file is larger than the remote's max size ({exc.limit} bytes)")
    except DatabaseUnavailable:
        return unavailable()
    except StorageError as exc:
        return insufficient_storage(request, exc)
    except StorageUnavailable as exc:
        log.warning("%s %s: %s", escape(request.method), escape(request.path), exc)
        return _text(503, "storage unavailable", {hdrs.RETRY_AFTER: RETRY_AFTER})
    except UpstreamError as exc:
        if exc.status == 404 and resolution.source == "pull_through":
            if isinstance(resolution, RemoteSource):  # (a stored copy's revalidation: kept)
                request.app[MISSING].note(resolution)
            return _text(404, "not found upstream")
        return _text(504 if exc.timeout else 502, f"upstream failed: {exc}")
    raise AssertionError(f"unhandled resolution {resolution!r}")


async def _stored(request: web.Request, hit: LocalArtifact) -> web.StreamResponse:
    """A stored file, after a pull-through copy's revalidation if it is due."""
    if hit.pulled is not None:
        hit = await request.app[REVALIDATIONS].current(hit)
    request[CACHING] = _caching(request, hit)
    settings = request.app[SETTINGS]
    request[SERVED_FROM] = "delegated" if settings.delegate else "storage"
    request.app[USAGE].note(hit.artifact.sha256)
    bucket = request.app[BUCKET]
    if bucket is not None:  # S3 storage (never delegated: see config)
        return await bucket.serve(request, hit, request.app[FILES])
    if settings.delegate is not None:
        return delegated(
            request,
            hit,
            request.app[STORAGE],
            settings.delegate,
            settings.delegate_prefix,
        )
    return await serve(request, hit, request.app[STORAGE], request.app[FILES])


def _caching(request: web.Request, resolution: Resolution) -> Caching:
    settings = request.app[SETTINGS]
    lifetimes = Lifetimes(settings.immutable_max_age, settings.short_max_age)
    from_proxy = is_trusted_proxy(request.remote, settings.trusted_proxies)
    guard = request.get(GUARD)
    return caching_of(resolution, guard, from_proxy, lifetimes, dt.datetime.now(dt.UTC))


def insufficient_storage(request: web.BaseRequest, exc: StorageError) -> web.Response:
    """RFC 4918 §11.5: the server cannot store what it needs to complete the request.
    Logged with the path escaped: the path is the client's."""
    log.warning("%s %s: %s", escape(request.method), escape(request.path), exc)
    return _text(507, "insufficient storage")


def _refuse(request: web.Request, refusal: Forbidden) -> web.Response:
    # The path without its query (a signed URL's query is a credential); reasons never
    # carry secrets. Escaped: the path is the client's.
    log.info(
        "refused %s %s: %s",
        escape(request.method),
        escape(request.path),
        escape(refusal.reason),
    )
    headers: dict[str, str] = {}
    if refusal.challenge:
        headers[hdrs.WWW_AUTHENTICATE] = refusal.challenge
    if refusal.retry_after is not None:
        headers[hdrs.RETRY_AFTER] = str(refusal.retry_after)
    return _text(refusal.status, refusal.reason, headers)


def unavailable() -> web.Response:
    """503 while the database does not answer (the cause is logged where it was seen)."""
    return _text(503, "database unavailable", {hdrs.RETRY_AFTER: RETRY_AFTER})


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)
