"""Answer a request for a lazy artifact by following its shared download (no ORM).

The order of events is the point of this module:
- the upstream's status is known before the client's response is prepared, so an
  upstream failure becomes a 502/504 (the download tries every remote artifact first);
- the client reads the download's file from its own offset, so it never waits for
  another client and late clients first get what is already on disk;
- the last byte is held back until size and digests check out, so no client ever gets
  every byte of a corrupt file, whatever ranges it asks for (a range forwarded upstream
  never includes it); a failure after the first byte aborts the connection
  (the client sees an incomplete transfer), never a retry from byte 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
from typing import IO

from aiohttp import ClientResponse, hdrs, web

from pulp_content.service.download import Downloads
from pulp_content.service.errors import ContentError, EndedElsewhere, TooLarge, UpstreamError
from pulp_content.service.keys import SERVED_FROM
from pulp_content.service.peers import PeerDownload
from pulp_content.service.progress import Progress
from pulp_content.service.serve import Plan, not_modified_response, plan
from pulp_content.service.shared import SharedDownload, usable
from pulp_content.service.types import RemoteSource
from pulp_content.service.upstream import chunks
from pulp_content.service.verify import check_size


async def stream(
    request: web.BaseRequest, src: RemoteSource, downloads: Downloads
) -> web.StreamResponse:
    """Answer with a lazy artifact; raises UpstreamError when no remote artifact answers."""
    relative = src.relative_path or ""
    decided: Plan | None = None
    if src.size is None and request.method == hdrs.METH_HEAD:
        return await _head(request, src, downloads)
    if src.size is not None:
        decided = plan(request, relative, src.size, src.sha256, src.last_modified)
        if decided is None:
            return not_modified_response(relative, src.sha256, src.last_modified)
        if request.method == hdrs.METH_HEAD:
            # Known size and digest: no reason to touch the upstream.
            return decided.response()
    if decided is not None and decided.status == 206 and decided.start > 0:
        forwarded = await _forward_range(request, src, downloads, decided)
        if forwarded is not None:
            return forwarded
    download, fobj = await _started(downloads, src)
    # The access log's served-from: this request began the download, or joined one.
    began = isinstance(download, SharedDownload) and download.joins == 1
    if isinstance(download, PeerDownload):
        request[SERVED_FROM] = "peer"  # another host's download, read from it
    else:
        request[SERVED_FROM] = "upstream" if began else "shared download"
    downloads.follows(1)
    try:
        if decided is None and download.size is not None:
            decided = plan(request, relative, download.size, src.sha256, src.last_modified)
            if decided is None:
                return not_modified_response(relative, src.sha256, src.last_modified)
        if decided is None:
            response = web.StreamResponse()  # size unknown until the end: chunked
            response.content_type = download.content_type or "application/octet-stream"
            start, end = 0, None
        else:
            response = decided.response()
            start, end = decided.start, decided.start + decided.count
        if request.method == hdrs.METH_HEAD:
            return response
        await response.prepare(request)
        finished = await _follow(request, response, download, fobj, start, end)
        if finished:
            # The whole file went out: stay until it is saved, so this request's queries
            # and a graceful shutdown both cover the save.
            await download.finished
        return response
    finally:
        downloads.follows(-1)
        if fobj is not None:
            fobj.close()
        download.leave()


ATTEMPTS = 3  # the first ask, and two more after a download that ended elsewhere


async def _started(downloads: Downloads, src: RemoteSource) -> tuple[Progress, IO[bytes]]:
    """Join the download of `src`, wait for its start and open what to follow; the caller
    follows it, closes the handle and leaves. A download another worker ended before this
    one could follow it is asked for again (this worker may then download it itself):
    twice, as a claim can be held a moment longer by a process that does not download
    (a reclaim removing the file, a sync's batch)."""
    for attempt in range(1, ATTEMPTS + 1):
        # With a handle taken now: a streamed file goes the moment its download ends.
        download, fobj = await downloads.join(src)
        try:
            await download.started
            fobj = await download.reader(fobj)
            return download, fobj
        except BaseException as exc:
            if fobj is not None:
                fobj.close()
            download.leave()
            if not isinstance(exc, ContentError):
                raise
            if isinstance(exc, EndedElsewhere) and attempt < ATTEMPTS:
                continue
            # Answered once the download let go of its file and claim: after a 502 the
            # storage holds nothing of it.
            await asyncio.shield(download.finished)
            raise
    raise AssertionError("unreachable")


async def _head(
    request: web.BaseRequest, src: RemoteSource, downloads: Downloads
) -> web.StreamResponse:
    """HEAD of a file whose size is not known yet (pull-through): the upstream's answer to
    a HEAD of its own; nothing is downloaded, nothing is kept."""
    failure: UpstreamError | None = None
    for ra in usable(src.remote_artifacts, downloads.cooldown):
        try:
            async with downloads.upstream.head(ra.config, ra.url) as answer:
                size, content_type = answer.content_length, answer.content_type
            check_size(ra.config, ra.url, size)
        except TooLarge:
            raise
        except UpstreamError as exc:
            failure = exc
            continue
        request[SERVED_FROM] = "upstream"
        if size is None:
            response = web.StreamResponse()
            response.content_type = content_type
            return response
        relative = src.relative_path or ""
        decided = plan(request, relative, size, None, None)
        if decided is None:
            return not_modified_response(relative, None, None)
        return decided.response()
    assert failure is not None
    raise failure


async def _forward_range(
    request: web.BaseRequest, src: RemoteSource, downloads: Downloads, decided: Plan
) -> web.StreamResponse | None:
    """A range the shared download has not reached yet comes straight from the upstream
    (when it honours Range), so the client need not wait for the bytes before it; an
    on_demand artifact is still downloaded whole, once, in the background. None: follow
    the shared download instead."""
    if decided.start + decided.count == src.size:
        # The file's last byte: only the shared download may send it, once the whole file
        # is verified. Forwarded, a client asking for every range of a file (segmented
        # downloaders do) would hold every byte of a corrupt one.
        return None
    if await downloads.written(src) >= decided.start:
        return None  # already on disk, here or in another worker's partial file
    first, last = decided.start, decided.start + decided.count - 1
    ra = usable(src.remote_artifacts, downloads.cooldown)[0]
    # Asked once: on a failure the shared download (which retries) serves the range.
    once = dataclasses.replace(ra.config, retries=0)
    try:
        check_size(ra.config, ra.url, src.size)
        async with downloads.upstream.get(
            once, ra.url, {hdrs.RANGE: f"bytes={first}-{last}"}
        ) as answer:
            # RFC 9110 §15.3.7: only a 206 for exactly these bytes will do.
            expected = f"bytes {first}-{last}/{src.size}"
            if answer.status != 206 or answer.headers.get(hdrs.CONTENT_RANGE) != expected:
                return None
            if src.policy != "streamed":
                # Now that the range is on its way: the one full download, unfollowed.
                download, handle = await downloads.join(src)
                if handle is not None:
                    handle.close()
                download.leave()
            request[SERVED_FROM] = "upstream"
            return await _relay_range(request, decided.response(), answer, downloads.chunk_size)
    except UpstreamError:
        return None  # the shared download tries every remote artifact and reports


async def _relay_range(
    request: web.BaseRequest,
    response: web.StreamResponse,
    answer: ClientResponse,
    chunk_size: int,
) -> web.StreamResponse:
    await response.prepare(request)
    try:
        async for chunk in chunks(answer, chunk_size):
            await response.write(chunk)
    except UpstreamError:
        if request.transport is not None:
            request.transport.abort()  # the client must see an incomplete transfer
        return response
    except ConnectionError:
        return response
    await response.write_eof()
    return response


def _ready(download: Progress) -> int:
    """How many bytes of the file a follower may send now.

    Until the download is verified the last byte stays back: with a known size, once
    everything else arrived; with an unknown size, always.
    """
    written = download.written
    if download.verified:
        return written
    if download.size is not None and written < download.size:
        return written
    return max(0, written - 1)


async def _next_piece(download: Progress, fobj: IO[bytes], position: int, upto: int) -> bytes:
    """Bytes from `position` (before `upto`): from the chunks in memory when this
    follower keeps up, else read back from the file on a thread (with pread: the handle
    may share its offset with the writer's), never past the first chunk in memory, which
    may still be on its way to the disk."""
    for offset, chunk in download.recent:
        if offset <= position < offset + len(chunk):
            return chunk[position - offset : min(upto, offset + len(chunk)) - offset]
    if download.recent:
        upto = min(upto, download.recent[0][0])
    count = min(download.chunk_size, upto - position)
    return await asyncio.to_thread(os.pread, fobj.fileno(), count, position)


async def _follow(
    request: web.BaseRequest,
    response: web.StreamResponse,
    download: Progress,
    fobj: IO[bytes],
    start: int,
    end: int | None,
) -> bool:
    """Copy bytes [start, end) of the download to the client as they become ready.
    Returns whether the client got every byte up to the end of the file."""
    position = start
    while True:
        ready = _ready(download)
        upto = ready if end is None else min(ready, end)
        if position < upto:
            data = await _next_piece(download, fobj, position, upto)
            try:
                await response.write(data)
            except ConnectionError:
                return False  # the client left; the download goes on without it
            position += len(data)
            continue
        if download.verified and position >= (end if end is not None else download.written):
            with contextlib.suppress(ConnectionError):
                await response.write_eof()
            return end is None or end == download.size
        if download.task is not None and download.task.done() and not download.verified:
            # RFC 9112 §6.3: closing before Content-Length is reached tells the client
            # its transfer is incomplete.
            if request.transport is not None:
                request.transport.abort()
            return False
        if end is not None and position >= end:
            with contextlib.suppress(ConnectionError):
                await response.write_eof()  # a range that ends before the file does
            return False
        await download.changed()
