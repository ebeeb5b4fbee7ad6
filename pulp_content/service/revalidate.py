"""Keep a mutable pull-through copy fresh: revalidate it upstream once it is older than
its max age, once at a time per file across workers, and serve it while the upstream
fails (no ORM: reads and writes go through `Refresh`).

- A request for a stale copy asks the upstream with `If-None-Match`/`If-Modified-Since`:
  a 304 resets the copy's age; a 200's bytes are verified, stored as a new artifact and
  become the file at that path (the old artifact stays for whatever references it).
- One revalidation per file at a time: in this process one task per file; across
  processes and hosts the download claims (`service.locks`) under a name of its own.
  Requests arriving meanwhile get the copy there is, unless it is past its max stale;
  the request that began the revalidation waits for it (so the client that asked after
  the max age sees what the upstream has now).
- Stale-if-error (RFC 5861 §4): an upstream that cannot be reached, times out or
  answers 5xx leaves the copy served, up to `max_stale` seconds past its max age, with
  a log line; a 4xx is the upstream's answer, and the client gets it.
- Offline (`serve --offline`): no upstream is asked; every copy is served as it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import hashlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

from aiohttp import ClientResponse, hdrs

from pulp_content.service.errors import DigestMismatch, TooLarge, UpstreamError
from pulp_content.service.freshness import UpstreamState, age_of, upstream_state
from pulp_content.service.redact import shown
from pulp_content.service.shared import storage_error
from pulp_content.service.storage import Storage
from pulp_content.service.types import LocalArtifact, Pulled
from pulp_content.service.upstream import Upstream, chunks
from pulp_content.service.verify import Download, Verifier, check_size

log = logging.getLogger(__name__)
Clock = Callable[[], dt.datetime]


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Refresh(Protocol):
    """The database side of a revalidation (`ingest.OrmPersist`)."""

    async def repulled(self, hit: LocalArtifact) -> LocalArtifact | None:
        """The copy as the database has it now (None: no copy stored any more)."""

    async def confirm(self, pulled: Pulled, said: UpstreamState) -> None:
        """The upstream answered 304: the copy is current as of now."""

    async def replace(self, hit: LocalArtifact, download: Download) -> None:
        """The upstream sent new bytes: store them as the file at this path."""


def conditional_headers(pulled: Pulled) -> dict[str, str]:
    """RFC 9110 §13.1: the validators the upstream gave for the copy we have."""
    headers: dict[str, str] = {}
    if pulled.etag:
        headers[hdrs.IF_NONE_MATCH] = pulled.etag
    if pulled.last_modified:
        headers[hdrs.IF_MODIFIED_SINCE] = pulled.last_modified
    return headers


def claim_name(pulled: Pulled) -> str:
    """The name workers claim to revalidate this file (apart from its download's)."""
    ra = pulled.remote_artifact
    key = f"revalidate\n{ra.config.id}\n{ra.url}".encode()
    return "revalidate" + hashlib.sha256(key).hexdigest()


class Revalidations:
    """The revalidations this process runs, by remote and URL."""

    def __init__(
        self,
        storage: Storage,
        upstream: Upstream,
        refresh: Refresh,
        chunk_size: int,
        offline: bool = False,
        clock: Clock = utcnow,
        failure_cooldown: float = 30.0,
    ) -> None:
        self.storage = storage
        self.upstream = upstream
        self.refresh = refresh
        self.chunk_size = chunk_size
        self.offline = offline
        self.clock = clock
        self._running: dict[tuple[int, str], asyncio.Future[LocalArtifact]] = {}
        # Seconds a copy the upstream could not confirm is served without asking again:
        # an upstream that times out would otherwise hold one request per file for the
        # whole timeout, every time. By file, when it last failed.
        self.failure_cooldown = failure_cooldown
        self._failed: dict[tuple[int, str], dt.datetime] = {}
        self.asked = 0  # conditional requests sent upstream (tests, metrics)

    async def current(self, hit: LocalArtifact) -> LocalArtifact:
        """The copy to serve for `hit`: itself while fresh, else as revalidated now."""
        pulled = hit.pulled
        now = self.clock()
        if pulled is None or pulled.fresh(now) or self.offline:
            return hit
        key = (pulled.remote_artifact.config.id, pulled.remote_artifact.url)
        if self._cooling(key, now) and pulled.servable_stale(now):
            return hit
        running = self._running.get(key)
        if running is not None:
            # Another request of this process revalidates it: the copy there is, while
            # it may still be served stale.
            return hit if pulled.servable_stale(now) else await asyncio.shield(running)
        task = asyncio.ensure_future(self._revalidate(hit))
        self._running[key] = task
        task.add_done_callback(lambda _: self._running.pop(key, None))
        # Shielded: a client that leaves does not stop what other clients will read.
        return await asyncio.shield(task)

    def _cooling(self, key: tuple[int, str], now: dt.datetime) -> bool:
        """Whether the upstream failed to confirm this file within the cooldown."""
        failed = self._failed.get(key)
        if failed is None:
            return False
        if (now - failed).total_seconds() < self.failure_cooldown:
            return True
        del self._failed[key]
        return False

    async def aclose(self) -> None:
        """Shutdown: let the revalidations in progress end (they hold claims)."""
        await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _revalidate(self, hit: LocalArtifact) -> LocalArtifact:
        assert hit.pulled is not None
        # The claim alone (no file yet): the locks make the directory it lives in.
        partial = self.storage.partial_of(claim_name(hit.pulled))
        claimed = await self.storage.locks.aclaim(partial, _nothing)
        if claimed is None:
            return hit  # another worker revalidates it now: the copy there is
        claim, _ = claimed
        try:
            # Another worker may have revalidated it since this one resolved.
            now_hit = await self.refresh.repulled(hit) or hit
            assert now_hit.pulled is not None
            if now_hit.pulled.fresh(self.clock()):
                return now_hit
            return await self._ask(now_hit)
        finally:
            claim.release()

    async def _ask(self, hit: LocalArtifact) -> LocalArtifact:
        """One conditional GET upstream, and what its answer makes of the copy."""
        pulled = hit.pulled
        assert pulled is not None
        ra = pulled.remote_artifact
        self.asked += 1
        try:
            async with self.upstream.get(ra.config, ra.url, conditional_headers(pulled)) as answer:
                if answer.status == 304:
                    await self.refresh.confirm(pulled, _kept(pulled, answer))
                    log.info("revalidated %s: not modified", shown(ra.url))
                else:
                    check_size(ra.config, ra.url, answer.content_length)
                    renewed = await self._renewed(hit, ra.config.max_size, answer)
                    log.info("revalidated %s: new content", shown(ra.url))
                    return renewed
        except (TooLarge, DigestMismatch):
            raise
        except UpstreamError as exc:
            if exc.status is not None and exc.status < 500:
                raise  # the upstream's own answer (404: gone), not a failure
            return self._stale_if_error(hit, exc)
        return await self.refresh.repulled(hit) or hit

    def _stale_if_error(self, hit: LocalArtifact, exc: UpstreamError) -> LocalArtifact:
        assert hit.pulled is not None
        now = self.clock()
        if not hit.pulled.servable_stale(now):
            raise exc
        ra = hit.pulled.remote_artifact
        self._failed[(ra.config.id, ra.url)] = now
        age = age_of(hit.pulled.validated_at, now)
        log.warning(
            "upstream failed for %s (%s): serving the copy confirmed %d s ago",
            shown(hit.pulled.remote_artifact.url),
            shown(exc),
            age,
        )
        return hit

    async def _renewed(
        self, hit: LocalArtifact, limit: int | None, answer: ClientResponse
    ) -> LocalArtifact:
        """The new bytes, verified, stored as the file at this path. Written to a partial
        file claimed until it is placed, so another worker's start-up sweep leaves it."""
        ra = hit.pulled.remote_artifact if hit.pulled is not None else None
        assert ra is not None
        path = await asyncio.to_thread(self.storage.new_partial)
        claimed = await self.storage.locks.aclaim(path, _nothing)
        assert claimed is not None, "a fresh name: nobody else has it"
        claim, _ = claimed
        try:
            verifier = Verifier(ra.url, answer.content_length, {}, limit)
            await self._receive(path, verifier, answer)
            said = upstream_state(answer.headers)
            download = Download(path, verifier.received, verifier.finish(), said)
            await asyncio.shield(self.refresh.replace(hit, download))
        except OSError as exc:
            raise storage_error(exc) from exc
        finally:
            await asyncio.to_thread(_gone, path)  # placed (renamed into storage) or failed
            claim.release()
        return await self.refresh.repulled(hit) or hit

    async def _receive(self, path: Path, verifier: Verifier, answer: ClientResponse) -> None:
        out = await asyncio.to_thread(open, path, "wb")
        try:
            async for chunk in chunks(answer, self.chunk_size):
                await asyncio.to_thread(_absorb, out, verifier, chunk)
        finally:
            await asyncio.to_thread(out.close)


def _kept(pulled: Pulled, answer: ClientResponse) -> UpstreamState:
    """What a 304 says, with the validators we had where it repeats none (RFC 9111
    §4.3.4: the stored response is updated with the headers the 304 carries)."""
    said = upstream_state(answer.headers)
    return dataclasses.replace(
        said,
        etag=said.etag or pulled.etag,
        last_modified=said.last_modified or pulled.last_modified,
    )


def _absorb(out: IO[bytes], verifier: Verifier, chunk: bytes) -> None:
    verifier.update(chunk)
    out.write(chunk)


def _gone(path: Path) -> None:
    path.unlink(missing_ok=True)  # placed (renamed into storage), or left by a failure


def _nothing() -> None:
    """What a claim holder does first when it has nothing to create yet."""
