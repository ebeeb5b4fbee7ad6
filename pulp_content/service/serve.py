"""Serve a stored artifact: sendfile with Range, HEAD and conditional requests."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from aiohttp import hdrs, web

from pulp_content.service.errors import FileMissing
from pulp_content.service.filecache import SmallFiles
from pulp_content.service.headers import not_modified, range_applies, representation_headers
from pulp_content.service.keys import SENT_DIRECTLY, SERVED_FROM
from pulp_content.service.ranges import parse_range
from pulp_content.service.storage import Storage
from pulp_content.service.types import LocalArtifact

SMALL_FILE = 64 * 1024


@dataclass(frozen=True)
class Plan:
    """What an answer of `size` bytes will be: status, the bytes it carries, its headers."""

    status: int
    start: int
    count: int
    headers: dict[str, str]

    def response(self) -> web.StreamResponse:
        response = web.StreamResponse(status=self.status, headers=self.headers)
        response.content_length = self.count
        return response


def plan(
    request: web.BaseRequest,
    relative_path: str,
    size: int,
    sha256: str | None,
    last_modified: dt.datetime | None,
) -> Plan | None:
    """Decide the answer for a file of known size; None means 304 Not Modified.

    Raises RangeError (-> 416) for an unsatisfiable Range.
    """
    headers = representation_headers(relative_path, sha256, last_modified)
    if not_modified(request, sha256, last_modified):
        return None
    wanted = request.headers.get(hdrs.RANGE)
    if wanted is None or not range_applies(request, sha256, last_modified):
        return Plan(200, 0, size, headers)
    byte_range = parse_range(wanted, size)
    if byte_range is None:
        return Plan(200, 0, size, headers)
    headers[hdrs.CONTENT_RANGE] = byte_range.content_range(size)
    return Plan(206, byte_range.start, byte_range.length, headers)


def not_modified_response(
    relative_path: str, sha256: str | None, last_modified: dt.datetime | None
) -> web.Response:
    headers = representation_headers(relative_path, sha256, last_modified)
    del headers[hdrs.CONTENT_TYPE]
    return web.Response(status=304, headers=headers)


def delegated(
    request: web.BaseRequest,
    hit: LocalArtifact,
    storage: Storage,
    web_server: str,
    prefix: str,
) -> web.Response:
    """Hand a stored file to the front web server (it does Range and HEAD itself)."""
    art, relative = hit.artifact, hit.relative_path or ""
    if not_modified(request, art.sha256, hit.last_modified):
        return not_modified_response(relative, art.sha256, hit.last_modified)
    headers = representation_headers(relative, art.sha256, hit.last_modified)
    if web_server == "nginx":
        headers["X-Accel-Redirect"] = prefix + art.storage_path
    else:
        headers["X-Sendfile"] = str(storage.path_of(art.storage_path))
    return web.Response(status=200, headers=headers)


def stored_plan(request: web.BaseRequest, hit: LocalArtifact) -> Plan | web.StreamResponse:
    """What to send of the stored file of `hit`, wherever it is stored; or the whole
    answer when it has no body (a 304, a HEAD, an empty range: the row knows it all)."""
    art, relative = hit.artifact, hit.relative_path or ""
    decided = plan(request, relative, art.size, art.sha256, hit.last_modified)
    if decided is None:
        return not_modified_response(relative, art.sha256, hit.last_modified)
    if request.method == hdrs.METH_HEAD or decided.count == 0:
        return decided.response()
    return decided


async def serve(
    request: web.BaseRequest,
    hit: LocalArtifact,
    storage: Storage,
    files: SmallFiles | None = None,
) -> web.StreamResponse:
    """Answer with the stored file of `hit` (a small one from `files` when kept there)."""
    decided = stored_plan(request, hit)
    if not isinstance(decided, Plan):
        return decided
    art = hit.artifact
    try:
        if files is not None and art.size <= SMALL_FILE:
            whole, kept = await _small_file(files, storage, art.storage_path, art.size)
            if kept:
                request[SERVED_FROM] = "memory"  # no disk read at all
            body = whole[decided.start : decided.start + decided.count]
            return web.Response(status=decided.status, headers=decided.headers, body=body)
        if decided.count <= SMALL_FILE:
            # One read and one write of headers and body beat the sendfile machinery
            # (selector registration, a wait for the buffer to drain).
            path = storage.path_of(art.storage_path)
            body = await asyncio.to_thread(_read, path, decided.start, decided.count)
            return web.Response(status=decided.status, headers=decided.headers, body=body)
        fobj = await asyncio.to_thread(open, storage.path_of(art.storage_path), "rb")
    except FileNotFoundError as exc:
        raise FileMissing(hit.path) from exc
    try:
        response = decided.response()
        await response.prepare(request)
        await sendfile(request, fobj, decided.start, decided.count)
        await response.write_eof()
        return response
    finally:
        fobj.close()


async def _small_file(
    files: SmallFiles, storage: Storage, storage_path: str, size: int
) -> tuple[bytes, bool]:
    """A small file's bytes, and whether they were in memory already; else they are read
    on a thread and kept (when whole). Its path is made only then: a kept file's name was
    checked when it was read."""
    kept = files.get(storage_path)
    if kept is not None:
        return kept, True
    data = await asyncio.to_thread(_read, storage.path_of(storage_path), 0, size)
    if len(data) == size:  # a damaged file is served as it is, and not kept
        files.put(storage_path, data)
    return data, False


def _read(path: Path, start: int, count: int) -> bytes:
    """A small file's bytes, opened and read in one go (on a thread: the disk may wait)."""
    with open(path, "rb") as fobj:
        return os.pread(fobj.fileno(), count, start)


async def sendfile(request: web.BaseRequest, fobj: IO[bytes], start: int, count: int) -> None:
    """Copy `count` bytes from `start` straight to the socket.

    asyncio uses os.sendfile where the transport allows it and otherwise (TLS) copies
    through its executor, so the event loop never blocks on the disk.
    """
    transport = request.transport
    if transport is None or transport.is_closing():
        raise ConnectionResetError("client went away")
    try:
        await asyncio.get_running_loop().sendfile(transport, fobj, start, count)
    finally:
        # The response's own count misses these bytes; the file position says how many
        # went, even when the client hung up half-way (asyncio keeps it up to date).
        request[SENT_DIRECTLY] = request.get(SENT_DIRECTLY, 0) + fobj.tell() - start
