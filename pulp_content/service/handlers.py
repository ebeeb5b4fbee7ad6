"""request -> resolve -> serve | stream; the one place errors become HTTP answers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from aiohttp import hdrs, web
from asgiref.sync import sync_to_async

from pulp_content.service import queries
from pulp_content.service.database import unit_of_work
from pulp_content.service.errors import (
    DatabaseUnavailable,
    NotResolved,
    RangeError,
    StorageError,
    UpstreamError,
)
from pulp_content.service.keys import DOWNLOADS, QUERY_LOG, RESOLVER, SERVED_FROM, SETTINGS, STORAGE
from pulp_content.service.listing import render_listing
from pulp_content.service.resolve import (
    Forbidden,
    Listing,
    LocalArtifact,
    NotFound,
    Redirect,
    RemoteSource,
    Resolution,
    resolve,
)
from pulp_content.service.serve import delegated, serve
from pulp_content.service.stream import stream

log = logging.getLogger(__name__)


def resolver(concurrent: bool) -> Callable[..., Awaitable[Resolution]]:
    """`resolve` off the event loop. Concurrent: each executor thread keeps its own
    connection, so requests wait on a networked database side by side instead of queueing
    behind one connection; SQLite answers in microseconds and is fastest on one thread."""
    return sync_to_async(unit_of_work(resolve), thread_sensitive=not concurrent)


CLIENT_CLOSED_REQUEST = 499
RETRY_AFTER = "5"  # seconds: a restarting database is usually back by then


async def content(request: web.Request) -> web.StreamResponse:
    """GET or HEAD anything under the content prefix."""
    with queries.counting() as counter:
        try:
            resolution = await request.app[RESOLVER](
                request.raw_path,
                request.headers,  # read-only; only a guard looks at it
                request.app[SETTINGS].content_prefix,
            )
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


async def answer(request: web.Request, resolution: Resolution) -> web.StreamResponse:
    """Act on a resolution; every domain error is turned into HTTP here."""
    try:
        match resolution:
            case LocalArtifact() as hit:
                settings = request.app[SETTINGS]
                request[SERVED_FROM] = "delegated" if settings.delegate else "storage"
                if settings.delegate is not None:
                    return delegated(
                        request,
                        hit,
                        request.app[STORAGE],
                        settings.delegate,
                        settings.delegate_prefix,
                    )
                return await serve(request, hit, request.app[STORAGE])
            case RemoteSource() as src:
                return await stream(request, src, request.app[DOWNLOADS])
            case Listing() as listing:
                return render_listing(listing)
            case Redirect(location=location):
                raise web.HTTPMovedPermanently(location)
            case Forbidden(reason=why, status=status, challenge=challenge):
                # The path without its query (a signed URL's query is a credential);
                # reasons never carry secrets.
                log.info("refused %s %s: %s", request.method, request.path, why)
                headers: dict[str, str] | None = (
                    {hdrs.WWW_AUTHENTICATE: challenge} if challenge else None
                )
                return _text(status, why, headers)
            case NotFound(reason=why):
                return _text(404, why)
    except NotResolved as exc:
        return _text(404, exc.reason)
    except RangeError as exc:
        # RFC 9110 §14.4: unsatisfiable range -> 416 with bytes */size
        return _text(416, "range not satisfiable", {hdrs.CONTENT_RANGE: f"bytes */{exc.size}"})
    except DatabaseUnavailable:
        return unavailable()
    except StorageError as exc:
        # RFC 4918 §11.5: the server cannot store what it needs to complete the request.
        log.warning("%s %s: %s", request.method, request.path, exc)
        return _text(507, "insufficient storage")
    except UpstreamError as exc:
        if exc.status == 404 and resolution.source == "pull_through":
            return _text(404, "not found upstream")
        return _text(504 if exc.timeout else 502, f"upstream failed: {exc}")
    raise AssertionError(f"unhandled resolution {resolution!r}")


def unavailable() -> web.Response:
    """503 while the database does not answer (the cause is logged where it was seen)."""
    return _text(503, "database unavailable", {hdrs.RETRY_AFTER: RETRY_AFTER})


def _text(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, text=reason + "\n", headers=headers)
