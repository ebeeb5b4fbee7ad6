"""A `SharedDownload`: one upstream download run as its own task, not inside any
client's request. It tries the remote artifacts in order until one answers 2xx, writes
the body to a partial file beside storage while the digests run, announces every
chunk, resumes a dropped connection at its offset, and hands the verified file to
`Persist`. Whatever fails, the partial goes, the claim is dropped and followers wake."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import functools
import logging
import os
import queue
import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Self

from aiohttp import ClientResponse, hdrs

from pulp_content.service.errors import (
    ContentError,
    DigestMismatch,
    LackedUpstream,
    StorageError,
    TooLarge,
    UpstreamError,
)
from pulp_content.service.freshness import UpstreamState, upstream_state
from pulp_content.service.locks import Claim
from pulp_content.service.missing import lifetime
from pulp_content.service.progress import Persist, Progress
from pulp_content.service.redact import shown
from pulp_content.service.storage import Storage, artifact_name
from pulp_content.service.types import Absent, RemoteRef, RemoteSource
from pulp_content.service.upstream import Upstream, chunks
from pulp_content.service.verify import (
    Download,
    Verifier,
    check_size,
    expected_digests,
    over_quota,
)

log = logging.getLogger(__name__)


class SharedDownload(Progress):
    """One download in progress (or just finished), and what its followers need to know."""

    def __init__(
        self,
        src: RemoteSource,
        storage: Storage,
        persist: Persist,
        upstream: Upstream,
        chunk_size: int,
        cooldown: float,
        claimed: tuple[Path, Claim],
        out: IO[bytes],
    ) -> None:
        super().__init__(src, chunk_size, keep=src.policy != "streamed")
        self.cooldown = cooldown
        self.storage = storage
        self.persist = persist
        self.upstream = upstream
        # The claim says "a live download writes this partial file" to every process
        # (the start-up sweep and other workers); held until the file is placed or gone.
        self.path, self.claim = claimed
        # Open for reading and writing from the start (`Downloads.create`): a follower's
        # handle is a duplicate of it, taken without touching the filesystem, and it
        # outlives the file's removal when a streamed download ends.
        self._out = out
        self.error: ContentError | None = None
        self.failed_remote: str | None = None  # whose bytes `error` is about, if any
        self._stored: Path | None = None  # saved by another process before we began
        self._writer: WriteBehind | None = None  # the latest attempt's
        self.ending = False  # letting go of the file: no newcomer may join any more

    @classmethod
    async def create(
        cls,
        src: RemoteSource,
        storage: Storage,
        persist: Persist,
        upstream: Upstream,
        chunk_size: int,
        cooldown: float,
    ) -> Self:
        """A download of `src` into a partial file of a fresh name (nobody follows it from
        another process): claimed and created in one hop to the lock thread."""
        path = storage.partial_of(uuid.uuid4().hex)
        try:
            opened = functools.partial(storage.open_partial, path)
            claimed = await storage.locks.aclaim(path, opened)
        except OSError as exc:
            raise storage_error(exc) from exc
        assert claimed is not None, "a fresh name: nobody else has it"
        claim, out = claimed
        return cls(src, storage, persist, upstream, chunk_size, cooldown, (path, claim), out)

    @property
    def reusable(self) -> bool:
        if self.unwanted:
            return False
        # Once saved, a newcomer reads the stored file: only when it is on this disk.
        return (self.task is None or not self.ending) or (self.saved and self.storage.local)

    def _saved(self) -> Path:
        if self._stored is not None:
            return self._stored
        assert self.sha256 is not None, "verified downloads know their sha256"
        return self.storage.path_of(artifact_name(self.sha256))

    async def open(self) -> IO[bytes]:
        """The file being written (or, once saved, the stored artifact) for reading."""
        if not self.ending:
            return os.fdopen(os.dup(self._out.fileno()), "rb", buffering=0)
        # Saved into storage before this follower came (`reusable`): read it there (a
        # pull-through file's place is known from the sha256 computed while downloading).
        return await asyncio.to_thread(open, self._saved(), "rb")

    async def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        if self._stored is None:
            return await super().reader(early)
        if early is not None:
            early.close()  # the empty partial file of a download that never ran
        return await asyncio.to_thread(open, self._stored, "rb")

    # -- the download ----------------------------------------------------------------------
    async def run(self) -> None:
        """Try each remote artifact until one answers; then copy, verify and save.

        Never raises: whatever fails (the upstream, the disk, the database), the partial
        file goes, the claim is dropped and every follower wakes to the verdict."""
        try:
            if self.unwanted or await self._saved_elsewhere():
                return
            await self._attempts()
        except OSError as exc:
            self._failed(storage_error(exc))
        except ContentError as exc:  # StorageError, DatabaseUnavailable: nobody's upstream
            self._failed(exc)
        except Exception as exc:
            log.exception("download of %s failed", shown(self.src.path))
            self._failed(ContentError(f"download failed: {exc.__class__.__name__}"))
        finally:
            await self._end()

    async def _attempts(self) -> None:
        failure: UpstreamError | None = None
        for ra in usable(self.src.remote_artifacts, self.cooldown):
            try:
                await self._from(ra)
                return
            except UpstreamError as exc:
                if self.started.done():
                    self.error, self.failed_remote = exc, ra.config.name
                    log.warning(
                        "download of %s failed after its start: %s", shown(ra.url), shown(exc)
                    )
                    if ra.id is not None and not isinstance(exc, TooLarge):
                        await self.persist.mark_failed(self.src, ra)
                    return
                log.warning("%s failed before the first byte: %s", shown(ra.url), shown(exc))
                failure = exc
                if _blame(ra, exc):
                    await self.persist.mark_failed(self.src, ra)
                elif exc.status == 404 and self.src.source == "pull_through":
                    await self._lacked(ra)
        assert failure is not None
        self.started.set_exception(self._verdict(failure))

    async def _lacked(self, ra: RemoteRef) -> None:
        """The upstream answered 404 for this pull-through file: recorded before the
        claim goes, so whoever takes it next finds it."""
        await self.persist.note_missing(ra, lifetime(ra))

    def _verdict(self, failure: UpstreamError) -> ContentError:
        """What followers hear of a download that failed before its first byte."""
        return failure

    def _failed(self, exc: ContentError) -> None:
        """A failure of this service's own (storage, database), not of the upstream."""
        self.error = exc
        path = shown(self.src.path)
        if self.verified:
            log.warning("could not save %s (its clients got it whole): %s", path, exc)
        else:
            log.warning("download of %s stopped: %s", path, exc)
        if not self.started.done():
            self.started.set_exception(exc)

    async def _end(self) -> None:
        """Release everything the run held, off the event loop; then wake the followers."""
        self.ending = True
        try:
            await asyncio.shield(asyncio.to_thread(self._let_go))
        finally:
            self._close()

    def _let_go(self) -> None:
        """Close, remove, release: each step whatever the one before did."""
        try:
            if self._writer is not None:
                self._writer.join()  # a cancelled run's last writes, before the file closes
            with contextlib.suppress(OSError):  # a failed flush: the bytes are dropped anyway
                self._out.close()
            with contextlib.suppress(OSError):
                # Gone already when it was saved (renamed into storage); we still hold the
                # claim, so nobody else can have made a new file of this name.
                self.path.unlink(missing_ok=True)
        finally:
            self.claim.release()

    async def _saved_elsewhere(self) -> bool:
        """A pull-through file another process saved after this request resolved (its
        claim was dropped before ours was taken): serve the saved file, fetch nothing.
        Or one the upstream said it lacks, still within that answer's life: a 404,
        without asking again."""
        if self.src.content_artifact_id is not None or not self.keep:
            return False
        art = await self.persist.stored(self.src.remote_artifacts[0])
        if isinstance(art, Absent):
            self.started.set_exception(LackedUpstream(self.src.path))
            return True
        if art is None or not self.storage.local:
            return False  # (in a bucket, a file saved meanwhile is downloaded once more)
        self._stored = self.storage.path_of(art.storage_path)
        self.size = self.written = art.size
        self.sha256 = art.sha256
        self.verified = self.saved = True
        self.started.set_result(None)
        self._announce()
        return True

    async def _from(self, ra: RemoteRef) -> None:
        verifier: Verifier | None = None
        validator: str | None = None
        said = UpstreamState()
        resumes = 0
        while True:
            headers: dict[str, str] = {}
            if verifier is not None:
                # RFC 9110 §13.1.5: If-Range makes the upstream send the whole (new) file
                # instead of a range of something that changed under us.
                headers = {"Range": f"bytes={self.written}-", "If-Range": validator or ""}
            check_size(ra.config, ra.url, self.size)
            try:
                async with self.upstream.get(ra.config, ra.url, headers) as answer:
                    if verifier is None:
                        if self.size is None:
                            check_size(ra.config, ra.url, answer.content_length)
                            self.size = answer.content_length
                        self.content_type = answer.content_type
                        verifier = Verifier(
                            ra.url, self.size, expected_digests(self.src, ra), ra.config.max_size
                        )
                        validator = resumable(answer)
                        said = upstream_state(answer.headers)
                        self.started.set_result(None)
                    elif not continues(answer, self.written, self.size):
                        raise UpstreamError(ra.url, "could not resume at the same offset")
                    await self._copy(answer, verifier)
                    break
            except UpstreamError as exc:
                if (
                    verifier is None
                    or isinstance(exc, DigestMismatch | TooLarge)
                    or exc.timeout
                    or validator is None
                    or resumes >= MAX_RESUMES
                ):
                    raise
                resumes += 1
                log.info(
                    "resuming %s at byte %d after: %s", shown(ra.url), self.written, shown(exc)
                )
        digests = verifier.finish()
        if self.size is None:
            self.size = verifier.received
        self.sha256 = digests["sha256"]
        if self.keep and over_quota(ra.config.quota, verifier.received):
            self.keep = False  # larger than all its remote may keep: served, as streamed
        if not self.keep:
            # Kept nowhere: gone before the verdict lets followers send the last byte
            # (their handles, and the writer's, still read it).
            await asyncio.to_thread(self.path.unlink, missing_ok=True)
        self.verified = True
        self._announce()
        if self.keep:
            download = Download(self.path, verifier.received, digests, said)
            # Shielded: a cancelled task (shutdown) must not leave half a save behind.
            await asyncio.shield(self.persist.commit(self.src, ra, download))
            self.saved = True

    async def _copy(self, answer: ClientResponse, verifier: Verifier) -> None:
        """Read the upstream as fast as it sends (bytes still unread when its connection
        drops are lost with it, and asked for again by the resume), while a thread of
        this download's writes and digests them, in order (`WriteBehind`).

        Followers hear of each chunk as it arrives, before it is on disk: they take it
        from memory (`recent`) until it is written. The size checks run here, as each
        chunk comes; the verdict waits for every write."""
        writer = self._writer = WriteBehind(self._out, verifier.digest, self._on_disk)
        try:
            async for chunk in chunks(answer, self.chunk_size):
                verifier.count(chunk)
                await writer.put(chunk)
                self.recent.append((self.written, chunk))
                self.written += len(chunk)
                self._announce()
        finally:
            # Every chunk handed over is written (the file holds `written` bytes: for a
            # resume, or the verdict), or the write that failed is raised.
            await writer.close()

    def _on_disk(self, end: int) -> None:
        """The file holds every byte before `end` (of this run's writes): chunks wholly
        before it leave memory, but the newest one."""
        while len(self.recent) > 1:
            offset, chunk = self.recent[0]
            if offset + len(chunk) > end:
                return
            self.recent.popleft()


class WriteBehind:
    """Writes chunks to a file (and hands them to `digest`) on a thread of its own, in
    the order given, while the event loop goes on reading: `put` returns at once unless
    BACKLOG chunks are still unwritten (the disk is slower than the upstream), so memory
    stays bounded. The loop hears how far the file is written through `on_disk`. A write
    that fails stops the writing; `put` and `close` raise its error."""

    BACKLOG = 4

    def __init__(
        self, out: IO[bytes], digest: Callable[[bytes], None], on_disk: Callable[[int], None]
    ) -> None:
        self._out = out
        self._digest = digest
        self._on_disk = on_disk
        self._loop = asyncio.get_running_loop()
        self._queue: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._unwritten = 0
        self._room = asyncio.Event()
        self._error: BaseException | None = None
        self._done: asyncio.Future[None] = self._loop.create_future()
        self._offset = out.tell()
        self._thread = threading.Thread(target=self._run, name="pulp-content-write", daemon=True)
        self._thread.start()

    async def put(self, chunk: bytes) -> None:
        while self._unwritten >= self.BACKLOG and self._error is None:
            self._room.clear()
            await self._room.wait()
        if self._error is not None:
            raise self._error
        self._unwritten += 1
        self._queue.put(chunk)

    async def close(self) -> None:
        """Wait for every chunk handed over; the thread then ends."""
        self._queue.put(None)
        await asyncio.shield(self._done)
        if self._error is not None:
            raise self._error

    def join(self) -> None:
        """Off the loop: wait until the chunks handed over are written (or dropped after a
        failure) and the thread has ended."""
        self._queue.put(None)  # a second end mark, after `close`'s, is never read
        self._thread.join()

    # On the thread:
    def _run(self) -> None:
        try:
            while (chunk := self._queue.get()) is not None:
                if self._error is None:
                    self._write(chunk)
        finally:
            self._tell(_settle, self._done)

    def _write(self, chunk: bytes) -> None:
        try:
            self._digest(chunk)
            self._out.write(chunk)  # an OSError here (a full disk) ends the run: see run()
            self._out.flush()  # late followers read the file: the bytes must be in it
            self._offset += len(chunk)
        except BaseException as exc:
            self._error = exc
        self._tell(self._written, self._offset)

    def _tell(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    # Back on the loop:
    def _written(self, offset: int) -> None:
        self._unwritten -= 1
        self._room.set()
        if self._error is None:
            self._on_disk(offset)


def _settle(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)


MAX_RESUMES = 3


def _blame(ra: RemoteRef, exc: UpstreamError) -> bool:
    """Whether a failure before the first byte marks a saved remote artifact failed:
    no answer or a 5xx does; a 4xx or a file over the remote's max size does not."""
    if ra.id is None or isinstance(exc, TooLarge):
        return False
    return exc.status is None or exc.status >= 500


def storage_error(exc: OSError) -> StorageError:
    """What a client may be told about a failed write (no paths)."""
    return StorageError(f"cannot write to storage: {exc.strerror or exc.__class__.__name__}")


def resumable(answer: ClientResponse) -> str | None:
    """The validator to resume this response with (a strong ETag, else Last-Modified),
    or None when the upstream does not offer byte ranges."""
    if answer.headers.get(hdrs.ACCEPT_RANGES, "").lower() != "bytes":
        return None
    etag = answer.headers.get(hdrs.ETAG)
    if etag and not etag.startswith("W/"):
        return etag
    return answer.headers.get(hdrs.LAST_MODIFIED)


def continues(answer: ClientResponse, offset: int, size: int | None) -> bool:
    """Whether a resumed answer carries exactly the bytes from `offset` on."""
    if answer.status != 206:
        return False
    expected = f"bytes {offset}-{size - 1}/{size}" if size is not None else f"bytes {offset}-"
    return answer.headers.get(hdrs.CONTENT_RANGE, "").startswith(expected)


def usable(refs: tuple[RemoteRef, ...], cooldown: float) -> list[RemoteRef]:
    """Remote artifacts to try, in order: those that failed within `cooldown` seconds are
    skipped while another one is there; with no alternative, every one is tried again."""
    now = dt.datetime.now(dt.UTC)
    fresh = [
        r for r in refs if r.failed_at is None or (now - r.failed_at).total_seconds() >= cooldown
    ]
    return fresh or list(refs)
