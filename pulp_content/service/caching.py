"""The caching headers of content answers, for downstream caches and CDNs (RFC 9111).

- `Cache-Control`: `public, max-age=<immutable_max_age>` (a setting, one day by default)
  for what does not change at its URL: a publication's files that are not metadata, and
  immutable pull-through copies; a mutable pull-through copy gets its own max age (with
  `Age`, a downstream cache knows how much of it is left); metadata, a repository's
  latest version and listings get `short_max_age` (a minute by default). A guarded
  distribution's answers are `private`: no shared cache may keep them; `Vary` names the
  request header its guard reads (a private cache keys on it too).
- `Age` on a stored pull-through copy: how long ago the upstream last confirmed it.

The handler decides them with the resolution (`Caching`, kept on the request); one
response hook writes them on whatever response goes out, stored, streamed or delegated
alike, and only on a 200, 206 or 304."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from aiohttp import hdrs, web

from pulp_content.service.freshness import age_of, is_mutable, max_age_of
from pulp_content.service.types import (
    GuardRef,
    LocalArtifact,
    Pulled,
    RemoteSource,
    Resolution,
)

# RFC 9111 §3: answers a cache may keep. Errors and redirects carry no caching header.
CACHEABLE = frozenset({200, 206, 304})


@dataclass(frozen=True)
class Caching:
    """The caching headers of one answer (None: not sent)."""

    cache_control: str | None = None
    age: int | None = None
    vary: str | None = None


CACHING = web.RequestKey("caching", Caching)
# The content guard of the distribution that answers, if any (set as the request resolves).
GUARD: web.RequestKey[GuardRef | None] = web.RequestKey("guard")


def vary_of(guard: GuardRef | None, from_proxy: bool) -> str | None:
    """RFC 9110 §12.5.5: the request header the guard's verdict depends on (a signed
    URL's is in the URL itself; a client certificate is a header only from a proxy)."""
    match guard:
        case GuardRef(kind="header", settings=settings):
            return str(settings.get("header"))
        case GuardRef(kind="basic"):
            return hdrs.AUTHORIZATION
        case GuardRef(kind="x509", settings=settings) if from_proxy:
            return str(settings.get("header", "X-Client-Cert"))
    return None


@dataclass(frozen=True)
class Lifetimes:
    """Max ages (seconds) for what does not change at its URL, and for what may."""

    immutable: int
    short: int


def caching_of(
    resolution: Resolution,
    guard: GuardRef | None,
    from_proxy: bool,
    lifetimes: Lifetimes,
    now: dt.datetime,
) -> Caching:
    """The caching headers of an answer with a body (a file, a stream, a listing)."""
    scope = "private" if guard is not None else "public"
    max_age = _max_age(resolution, lifetimes)
    age = None
    if isinstance(resolution, LocalArtifact) and resolution.pulled is not None:
        age = int(age_of(resolution.pulled.validated_at, now))
    return Caching(f"{scope}, max-age={max_age}", age, vary_of(guard, from_proxy))


def _max_age(resolution: Resolution, lifetimes: Lifetimes) -> int:
    relative = resolution.relative_path or ""
    match resolution:
        case LocalArtifact(pulled=Pulled(max_age=max_age)):
            return lifetimes.immutable if max_age is None else max_age
        case RemoteSource(source="pull_through", remote_artifacts=(first, *_)):
            remote = first.config
            own = max_age_of(relative, remote.mutable, remote.metadata_max_age, None)
            return lifetimes.immutable if own is None else own
        case LocalArtifact(source="publication") | RemoteSource(source="publication"):
            # A publication's packages never change; its metadata is rewritten by the
            # next publication the distribution moves to.
            return lifetimes.short if is_mutable(relative) else lifetimes.immutable
    return lifetimes.short  # a repository's latest version, listings


async def add_caching_headers(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """`on_response_prepare`: write the request's caching headers on a cacheable answer."""
    caching = request.get(CACHING)
    if caching is None or response.status not in CACHEABLE:
        return
    if caching.cache_control is not None:
        response.headers.setdefault(hdrs.CACHE_CONTROL, caching.cache_control)
    if caching.age is not None:
        response.headers[hdrs.AGE] = str(caching.age)
    if caching.vary is not None:
        response.headers.setdefault(hdrs.VARY, caching.vary)
