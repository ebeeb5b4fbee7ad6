"""The caching headers of content answers, for downstream caches and CDNs (RFC 9111):
`Age` on a pull-through copy (how long ago the upstream last confirmed it). The
handler decides them with the resolution (`Caching`, kept on the request); one
response hook writes them on whatever response goes out, stored, streamed or
delegated alike."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import hdrs, web

from pulp_content.service.freshness import age_of
from pulp_content.service.types import LocalArtifact

# RFC 9111 §3: answers a cache may keep. Errors and redirects carry no caching header.
CACHEABLE = frozenset({200, 206, 304})


@dataclass(frozen=True)
class Caching:
    """The caching headers of one answer (None: not sent)."""

    age: int | None = None


CACHING = web.RequestKey("caching", Caching)


def caching_of(hit: LocalArtifact, now: dt.datetime) -> Caching:
    """The caching headers of a stored file."""
    if hit.pulled is None:
        return Caching()
    return Caching(age=int(age_of(hit.pulled.validated_at, now)))


async def add_caching_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: write the request's caching headers on a cacheable answer."""
    caching = request.get(CACHING)
    if caching is None or response.status not in CACHEABLE:
        return
    if caching.age is not None:
        response.headers[hdrs.AGE] = str(caching.age)
