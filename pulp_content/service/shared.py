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
import uuid
from pathlib import Path
from typing import IO

from aiohttp import ClientResponse, hdrs

from pulp_content.service.errors import (
    ContentError,
    DigestMismatch,
    StorageError,
    TooLarge,
    UpstreamError,
)
from pulp_content.service.freshness import UpstreamState, upstream_state
from pulp_content.service.locks import Claim
from pulp_content.service.progress import Persist, Progress
from pulp_content.service.redact import shown
from pulp_content.service.storage import Storage, artifact_name
from pulp_content.service.types import RemoteRef, RemoteSource
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
        self._stored: Path | None = None  # saved by another process before we began
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
    ) -> SharedDownload:
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
        return (self.task is None or not self.ending) or self.saved

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
                    self.error = exc
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
        assert failure is not None
        self.started.set_exception(failure)

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
        claim was dropped before ours was taken): serve the saved file, fetch nothing."""
        if self.src.content_artifact_id is not None or not self.keep:
            return False
        art = await self.persist.stored(self.src.remote_artifacts[0])
        if art is None:
            return False
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
        """Digests and writes run on a thread, one chunk at a time, while the next chunk
        is read: the upstream is drained as fast as it sends (bytes still unread when its
        connection drops are lost with it, and asked for again by the resume).

        Followers hear of each chunk as it arrives, before it is on disk: they take the
        newest chunk from memory (`tail`) and read back only what lies before it, which
        was written before this chunk's write began. The verdict waits for every write."""
        writing: asyncio.Future[None] | None = None
        try:
            async for chunk in chunks(answer, self.chunk_size):
                if writing is not None:
                    await writing
                writing = asyncio.ensure_future(asyncio.to_thread(self._absorb, verifier, chunk))
                self.tail = (self.written, chunk)
                self.written += len(chunk)
                self._announce()
        finally:
            if writing is not None:
                await writing  # the file holds `written` bytes: for a resume, or the verdict

    def _absorb(self, verifier: Verifier, chunk: bytes) -> None:
        verifier.update(chunk)
        self._out.write(chunk)  # an OSError here (a full disk) ends the run: see run()
        self._out.flush()  # late followers read the file: the bytes must be in it


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
