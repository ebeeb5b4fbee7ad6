"""Stream a lazy artifact: upstream -> client + temp file + running digests (no ORM).

The order of events is the point of this module:
- the upstream's status is checked before the client's response is prepared, so an
  upstream failure becomes a 502/504 and the next remote artifact can be tried;
- once bytes went to the client, nothing is retried from byte 0 (it would corrupt the
  body): a failure aborts the client's connection instead;
- the last chunk is held back until size and digests check out, so no client ever gets
  every byte of a corrupt file;
- only a verified file is handed to `Persist.commit`, shielded from cancellation.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from aiohttp import ClientResponse, hdrs, web

from service.errors import DigestMismatch, UpstreamError
from service.models import DIGESTS
from service.resolve import RemoteRef, RemoteSource
from service.serve import not_modified_response, plan
from service.storage import FileSystemStorage
from service.upstream import Upstream, chunks

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Download:
    """A verified download: the partial file (None when nothing is kept) and its digests."""

    partial: Path | None
    size: int
    digests: dict[str, str]


class Persist(Protocol):
    """What streaming needs from the database, passed in by the app."""

    async def commit(self, src: RemoteSource, ra: RemoteRef, download: Download) -> None: ...

    async def mark_failed(self, ra: RemoteRef) -> None: ...


class Verifier:
    """Running size and digests of a download against what is expected of it."""

    def __init__(self, url: str, size: int | None, expected: dict[str, str]) -> None:
        self.url = url
        self.size = size
        self.expected = {k: v.lower() for k, v in expected.items() if k in DIGESTS and v}
        self.hashers = {name: hashlib.new(name) for name in {"sha256", *self.expected}}
        self.received = 0

    def update(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.size is not None and self.received > self.size:
            raise DigestMismatch(self.url, f"sent more than the expected {self.size} bytes")
        for hasher in self.hashers.values():
            hasher.update(chunk)

    def finish(self) -> dict[str, str]:
        """The digests of what arrived; raises DigestMismatch if it is not what was expected."""
        if self.size is not None and self.received != self.size:
            raise DigestMismatch(self.url, f"sent {self.received} bytes, expected {self.size}")
        digests = {name: h.hexdigest() for name, h in self.hashers.items()}
        for name, value in self.expected.items():
            if digests[name] != value:
                raise DigestMismatch(self.url, f"{name} mismatch")
        return digests


def expected_digests(src: RemoteSource, ra: RemoteRef) -> dict[str, str]:
    digests = dict(ra.digests)
    if src.sha256:
        digests["sha256"] = src.sha256
    return digests


class Aborted(Exception):
    """A download failed after the client got bytes; its connection has been aborted."""

    def __init__(self, response: web.StreamResponse, cause: UpstreamError) -> None:
        super().__init__(str(cause))
        self.response = response
        self.cause = cause


async def stream(
    request: web.BaseRequest,
    src: RemoteSource,
    upstream: Upstream,
    storage: FileSystemStorage,
    persist: Persist,
    chunk_size: int,
) -> web.StreamResponse:
    """Answer with a lazy artifact, downloading it from the first remote artifact that
    answers; raises the last UpstreamError when none does before the first byte."""
    relative = src.relative_path or ""
    if src.size is not None:
        decided = plan(request, relative, src.size, src.sha256, src.last_modified)
        if decided is None:
            return not_modified_response(relative, src.sha256, src.last_modified)
        if request.method == hdrs.METH_HEAD:
            # Known size and digest: no reason to touch the upstream.
            return decided.response()
    failure: UpstreamError | None = None
    for ra in src.remote_artifacts:
        try:
            return await _from_remote(request, src, ra, upstream, storage, persist, chunk_size)
        except Aborted as aborted:
            log.warning("aborted transfer of %s: %s", src.path, aborted.cause)
            if ra.id is not None:
                await persist.mark_failed(ra)
            return aborted.response
        except UpstreamError as exc:
            log.warning("%s failed before the first byte: %s", ra.url, exc)
            failure = exc
            if ra.id is not None and (exc.status is None or exc.status >= 500):
                await persist.mark_failed(ra)
    assert failure is not None
    raise failure


async def _from_remote(
    request: web.BaseRequest,
    src: RemoteSource,
    ra: RemoteRef,
    upstream: Upstream,
    storage: FileSystemStorage,
    persist: Persist,
    chunk_size: int,
) -> web.StreamResponse:
    relative = src.relative_path or ""
    async with upstream.get(ra.config, ra.url) as answer:
        size = src.size if src.size is not None else answer.content_length
        decided = (
            plan(request, relative, size, src.sha256, src.last_modified)
            if (size is not None)
            else None
        )
        if decided is None:
            response = web.StreamResponse()
            response.content_type = answer.content_type or "application/octet-stream"
        else:
            response = decided.response()
        if request.method == hdrs.METH_HEAD:
            return response
        verifier = Verifier(ra.url, size, expected_digests(src, ra))
        partial = storage.new_partial() if ra.policy != "streamed" else None
        window = (decided.start, decided.start + decided.count) if decided else (0, None)
        try:
            with open(partial, "wb") if partial else contextlib.nullcontext() as out:
                await response.prepare(request)
                relayed = await _relay(response, answer, verifier, out, window, chunk_size)
        except UpstreamError as exc:
            _discard(partial)
            if request.transport is not None:
                # RFC 9112 §6.3: closing before Content-Length is reached tells the
                # client its transfer is incomplete.
                request.transport.abort()
            raise Aborted(response, exc) from exc
        except BaseException:
            _discard(partial)
            raise
    if partial is not None and relayed.digests is not None:
        download = Download(partial, verifier.received, relayed.digests)
        try:
            # Saved before the client gets its last bytes, so whoever asks next is
            # served from storage; shielded so a client going away cannot cut it short.
            await asyncio.shield(persist.commit(src, ra, download))
        finally:
            _discard(partial)
    if await _send(response, relayed.held):
        with contextlib.suppress(ConnectionError):
            await response.write_eof()
    return response


@dataclass(frozen=True)
class Relayed:
    """The end of a relay: verified digests (None: stopped early, nothing to keep) and the
    client's last piece, still held back."""

    digests: dict[str, str] | None
    held: bytes


async def _relay(
    response: web.StreamResponse,
    answer: ClientResponse,
    verifier: Verifier,
    out: IO[bytes] | None,
    window: tuple[int, int | None],
    chunk_size: int,
) -> Relayed:
    """Copy the upstream body to the file and the client's window of it.

    The client's last piece is held back until the whole download is verified, unless
    its window ends before the end of the file.
    """
    start, end = window
    position, held, client_ok, window_done = 0, b"", True, False
    async for chunk in chunks(answer, chunk_size):
        verifier.update(chunk)
        if out is not None:
            out.write(chunk)
        low = max(0, start - position)
        high = len(chunk) if end is None else max(0, min(len(chunk), end - position))
        position += len(chunk)
        if low < high and client_ok:
            client_ok = await _send(response, held)
            held = chunk[low:high]
        if not window_done and end is not None and end < (verifier.size or 0) and position >= end:
            # The client's range ends before the file does: it has all it asked for.
            window_done = True
            client_ok = client_ok and await _send(response, held)
            held = b""
            if client_ok:
                await response.write_eof()
        if out is None and (window_done or not client_ok):
            return Relayed(None, b"")  # streamed: nobody is left to receive the rest
    return Relayed(verifier.finish(), held if client_ok else b"")


async def _send(response: web.StreamResponse, data: bytes) -> bool:
    """Write to the client; False once it has gone (the download may still be kept)."""
    if not data:
        return True
    try:
        await response.write(data)
    except ConnectionError:
        return False
    return True


def _discard(partial: Path | None) -> None:
    if partial is not None:
        partial.unlink(missing_ok=True)
