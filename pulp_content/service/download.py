"""One upstream download per lazy artifact, shared by every client that asks for it.

A `SharedDownload` runs as its own task, not inside any client's request: it tries the
remote artifacts in order until one answers 2xx, then writes the body to a partial
file beside storage while running digests update, and announces every chunk. Clients
(`stream.follow`) read that file from their own offset at their own pace, so a slow
client neither makes the service buffer the upstream in memory nor slows the others,
and a client that arrives late first gets the bytes already on disk, then the live
ones. Nothing here touches the ORM: saving goes through `Persist`.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from aiohttp import ClientResponse, hdrs

from pulp_content.service.errors import (
    ContentError,
    DigestMismatch,
    StorageError,
    TooLarge,
    UpstreamError,
)
from pulp_content.service.locks import Claim
from pulp_content.service.redact import shown
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.storage import FileSystemStorage, artifact_name
from pulp_content.service.types import DIGESTS, ArtifactRef, RemoteRef, RemoteSource
from pulp_content.service.upstream import Upstream, chunks

log = logging.getLogger(__name__)
SAVED_GRACE = 30.0  # seconds a saved download stays joinable


@dataclass(frozen=True)
class Download:
    """A verified download: the partial file (None when nothing is kept) and its digests."""

    partial: Path | None
    size: int
    digests: dict[str, str]


class Persist(Protocol):
    """What downloading needs from the database, passed in by the app."""

    async def commit(self, src: RemoteSource, ra: RemoteRef, download: Download) -> None: ...

    async def mark_failed(self, ra: RemoteRef) -> None: ...

    def close(self) -> None: ...

    async def stored(self, ra: RemoteRef) -> ArtifactRef | None:
        """The artifact a pull-through fetch of `ra` was saved as, if one was."""


def check_size(remote: RemoteConfig, url: str, size: int | None) -> None:
    """Refuse a file larger than its remote's max_size (before downloading it)."""
    if remote.max_size is not None and size is not None and size > remote.max_size:
        raise TooLarge(url, remote.max_size)


class Verifier:
    """Running size and digests of a download against what is expected of it."""

    def __init__(
        self, url: str, size: int | None, expected: dict[str, str], limit: int | None = None
    ) -> None:
        self.url = url
        self.size = size
        self.limit = limit  # the remote's max_size: a body that grows past it is refused
        self.expected = {k: v.lower() for k, v in expected.items() if k in DIGESTS and v}
        self.hashers = {name: hashlib.new(name) for name in {"sha256", *self.expected}}
        self.received = 0

    def update(self, chunk: bytes) -> None:
        self.received += len(chunk)
        if self.limit is not None and self.received > self.limit:
            raise TooLarge(self.url, self.limit)
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


def key_of(src: RemoteSource) -> Hashable:
    """What makes two requests ask for the same download: the content artifact, or for
    pull-through the remote (its credentials, its max_size) and the URL."""
    if src.content_artifact_id is not None:
        return ("content_artifact", src.content_artifact_id)
    ra = src.remote_artifacts[0]
    return ("pull_through", ra.config.id, ra.url)


def partial_name(src: RemoteSource) -> str | None:
    """The name every process gives the partial file of `src`, so one downloads and the
    others follow: its sha256, or for pull-through (sha256 unknown until the end) a
    digest of what `key_of` names. None: each download gets a fresh name."""
    if src.sha256 and src.size is not None:
        return src.sha256
    if src.content_artifact_id is None:
        ra = src.remote_artifacts[0]
        return hashlib.sha256(f"pull-through\n{ra.config.id}\n{ra.url}".encode()).hexdigest()
    return None


class Progress(abc.ABC):
    """What followers of a download read: how far it got, the verdict, and a way to wait
    for either. SharedDownload runs one; TailedDownload watches another process's."""

    def __init__(self, src: RemoteSource, chunk_size: int, keep: bool) -> None:
        self.src = src
        self.chunk_size = chunk_size
        self.keep = keep
        self.size: int | None = src.size
        self.content_type: str | None = None
        self.written = 0
        # The newest chunk and its offset: followers keeping up take it from memory
        # instead of reading it back from the file.
        self.tail: tuple[int, bytes] = (0, b"")
        self.verified = False
        self.sha256: str | None = src.sha256  # known once verified, for pull-through too
        self.saved = False  # kept in storage for good (on_demand, after the commit)
        self.followers = 0
        self.joins = 0  # requests that joined, ever (the first one began it)
        loop = asyncio.get_running_loop()
        self.started: asyncio.Future[None] = loop.create_future()
        # Followers may all have left before a failure is known; nobody else must care.
        self.started.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.finished: asyncio.Future[None] = loop.create_future()
        self._changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None

    async def changed(self) -> None:
        """Wait until more bytes, the verdict or a failure arrive."""
        await self._changed.wait()

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def reusable(self) -> bool:
        """Still running, or finished and saved: a newcomer can follow it."""
        return self.task is None or not self.task.done() or self.saved

    def leave(self) -> None:
        """A follower is gone; a streamed download nobody follows any more stops."""
        self.followers -= 1
        if self.followers == 0 and not self.keep and self.task and not self.task.done():
            self.task.cancel()

    @abc.abstractmethod
    def open(self) -> IO[bytes] | None:
        """A handle taken the moment a follower joins, before the start (the file of a
        streamed download goes as soon as it ends; an open one outlives that). None:
        nothing to hold yet."""

    def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        """The file to follow once the download started (closing `early` if it is not)."""
        if early is None:
            raise UpstreamError(self.src.path, "the download left nothing to read")
        return early

    def _close(self) -> None:
        """The run is over: wake every follower; a start that never came is a failure."""
        if not self.started.done():
            self.started.set_exception(UpstreamError(self.src.path, "download cancelled"))
        self._announce()
        if not self.finished.done():
            self.finished.set_result(None)


class SharedDownload(Progress):
    """One download in progress (or just finished), and what its followers need to know."""

    def __init__(
        self,
        src: RemoteSource,
        storage: FileSystemStorage,
        persist: Persist,
        upstream: Upstream,
        chunk_size: int,
        cooldown: float = 0.0,
        claimed: tuple[Path, Claim] | None = None,
    ) -> None:
        super().__init__(src, chunk_size, keep=src.policy != "streamed")
        self.cooldown = cooldown
        self.storage = storage
        self.persist = persist
        self.upstream = upstream
        # The claim says "a live download writes this partial file" to every process
        # (the start-up sweep and other workers); held until the file is placed or gone.
        if claimed is None:
            path = storage.new_partial()
            claim = storage.locks.claim(path)
            assert claim is not None, "a fresh name: nobody else has it"
            claimed = path, claim
        self.path, self.claim = claimed
        # Created now, so a follower can open it the moment it joins: a streamed file is
        # removed as soon as its download ends, and an open file outlives that.
        try:
            self._out = open(self.path, "wb")  # noqa: SIM115 (closed when the run ends)
        except OSError as exc:
            self.claim.release()
            raise storage_error(exc) from exc
        self.error: ContentError | None = None
        self._stored: Path | None = None  # saved by another process before we began

    def _saved(self) -> Path:
        if self._stored is not None:
            return self._stored
        assert self.sha256 is not None, "verified downloads know their sha256"
        return self.storage.path_of(artifact_name(self.sha256))

    def open(self) -> IO[bytes]:
        """The file being written (or, once saved, the stored artifact) for reading."""
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            if not (self.verified and self.keep):
                raise
            # Saved into storage before this follower came: read it there (a pull-through
            # file's place is known from the sha256 computed while downloading).
            return open(self._saved(), "rb")

    def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        if self._stored is None:
            return super().reader(early)
        if early is not None:
            early.close()  # the empty partial file of a download that never ran
        return open(self._stored, "rb")

    # -- the download ----------------------------------------------------------------------
    async def run(self) -> None:
        """Try each remote artifact until one answers; then copy, verify and save.

        Never raises: whatever fails (the upstream, the disk, the database), the partial
        file goes, the claim is dropped and every follower wakes to the verdict."""
        try:
            if await self._saved_elsewhere():
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
            self._end()

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
                        await self.persist.mark_failed(ra)
                    return
                log.warning("%s failed before the first byte: %s", shown(ra.url), shown(exc))
                failure = exc
                if _blame(ra, exc):
                    await self.persist.mark_failed(ra)
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

    def _end(self) -> None:
        """Release everything the run held; each step whatever the one before did."""
        try:
            with contextlib.suppress(OSError):  # a failed flush: the bytes are dropped anyway
                self._out.close()
            with contextlib.suppress(OSError):
                # Gone already when it was saved (renamed into storage); we still hold the
                # claim, so nobody else can have made a new file of this name.
                self.path.unlink(missing_ok=True)
        finally:
            try:
                self.claim.release()
            finally:
                self._close()

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
        self._out.close()
        if self.size is None:
            self.size = verifier.received
        self.sha256 = digests["sha256"]
        self.verified = True
        self._announce()
        if self.keep:
            download = Download(self.path, verifier.received, digests)
            # Shielded: a cancelled task (shutdown) must not leave half a save behind.
            await asyncio.shield(self.persist.commit(self.src, ra, download))
            self.saved = True

    async def _copy(self, answer: ClientResponse, verifier: Verifier) -> None:
        out = self._out
        async for chunk in chunks(answer, self.chunk_size):
            verifier.update(chunk)
            out.write(chunk)  # an OSError here (a full disk) ends the run: see run()
            out.flush()  # late followers read the file: the bytes must be in it
            self.tail = (self.written, chunk)
            self.written += len(chunk)
            self._announce()


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


class TailedDownload(Progress):
    """A download another process runs: follow its partial file by polling.

    The other process holds the claim on `<sha256>.partial` (`service.locks`) while it
    writes it; it renames the partial into storage once verified (an open file outlives
    the rename), or removes it and drops the claim on failure. Whether the claim is still
    held is asked only when the file has not grown since the last look.
    """

    POLL = 0.02
    ASK_EVERY = 0.25  # seconds between questions to the claims (a database round trip)

    def __init__(self, src: RemoteSource, storage: FileSystemStorage, chunk_size: int) -> None:
        assert src.sha256 is not None and src.size is not None
        super().__init__(src, chunk_size, keep=True)
        self.storage = storage
        self._asked = 0.0
        self.partial = storage.new_partial(src.sha256)
        self.final = storage.path_of(artifact_name(src.sha256))

    def open(self) -> IO[bytes] | None:
        for path in (self.partial, self.final):  # placed between the two looks: see above
            with contextlib.suppress(FileNotFoundError):
                return open(path, "rb")
        return None  # not begun yet: `reader` opens it once it has

    def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        return super().reader(early if early is not None else self.open())

    def _gone(self) -> bool:
        """The other process stopped without placing the file."""
        now = time.monotonic()
        if now - self._asked < self.ASK_EVERY:
            return False
        self._asked = now
        return not self.storage.locks.held(self.partial) and not self.final.exists()

    async def watch(self) -> None:
        """Poll the other process's progress until the file is placed or abandoned."""
        try:
            while not (self.partial.exists() or self.final.exists()):
                if self._gone():
                    raise UpstreamError(self.src.path, "the download in another worker failed")
                await asyncio.sleep(self.POLL)
            self.started.set_result(None)
            while True:
                if self.final.exists():
                    self.written, self.verified, self.saved = self.size or 0, True, True
                    return
                before = self.written
                with contextlib.suppress(FileNotFoundError):  # placed, or removed: see above
                    self.written = self.partial.stat().st_size
                if self.written > before:
                    self._announce()
                elif self._gone():
                    return  # not verified: followers abort their clients
                await asyncio.sleep(self.POLL)
        except ContentError as exc:  # also DatabaseUnavailable: the claims cannot be asked
            if not self.started.done():
                self.started.set_exception(exc)
        finally:
            self._close()


class TailedPullThrough(Progress):
    """A pull-through download another process runs. Its sha256, and so its place in
    storage, is unknown until it ends, so its partial file is followed through a handle
    of our own, which outlives the rename into storage.

    The other process renames the verified file into storage (our handle still reads it,
    with one link) or removes it on failure (no link left), then drops its claim. A file
    still at the partial path when the claim is gone is a crash's leftover: not verified.
    When the partial file is gone before we could open it, the other process's save is
    looked up in the database.
    """

    POLL = TailedDownload.POLL
    ASK_EVERY = TailedDownload.ASK_EVERY

    def __init__(
        self,
        src: RemoteSource,
        storage: FileSystemStorage,
        persist: Persist,
        chunk_size: int,
        partial: Path,
    ) -> None:
        super().__init__(src, chunk_size, keep=True)
        self.storage = storage
        self.persist = persist
        self.partial = partial
        self._fd: int | None = None
        self._stored: Path | None = None
        self._asked = 0.0

    @property
    def reusable(self) -> bool:
        # Once over, the next request finds the saved file through the database.
        return self.task is None or not self.task.done()

    def open(self) -> None:
        return None  # the watcher opens the file once it exists

    def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        if self._stored is not None:
            return open(self._stored, "rb")
        assert self._fd is not None, "open while anyone follows"
        # Duplicates share one file offset; a follower seeks and reads without yielding
        # to the loop in between, so none disturbs another (unbuffered: no read-ahead
        # that assumes the offset is its own).
        return os.fdopen(os.dup(self._fd), "rb", buffering=0)

    def leave(self) -> None:
        super().leave()
        if self.task is not None and self.task.done():
            self._drop()

    def _drop(self) -> None:
        if self.followers == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _claimed(self) -> bool:
        """Whether the other process still holds the claim (asked at most every
        ASK_EVERY seconds: on PostgreSQL it is a database round trip)."""
        now = time.monotonic()
        if now - self._asked < self.ASK_EVERY:
            return True
        self._asked = now
        return self.storage.locks.held(self.partial)

    async def watch(self) -> None:
        """Open the other process's file, or find its save; then follow it to its end."""
        try:
            await self._attach()
            self.started.set_result(None)
            if self._stored is None:
                await self._follow()
        except UpstreamError as exc:
            self.started.set_exception(exc)
        finally:
            self._close()
            self._drop()

    async def _attach(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError):
                self._fd = os.open(self.partial, os.O_RDONLY)
                return
            if not self._claimed():
                break
            await asyncio.sleep(self.POLL)
        art = await self.persist.stored(self.src.remote_artifacts[0])
        if art is None:
            raise UpstreamError(self.src.path, "the download in another worker failed")
        self._stored = self.storage.path_of(art.storage_path)
        self.size = self.written = art.size
        self.sha256 = art.sha256
        self.verified = self.saved = True

    async def _follow(self) -> None:
        assert self._fd is not None
        while True:
            grown = os.fstat(self._fd).st_size
            if grown > self.written:
                self.written = grown
                self._announce()
            elif not self._claimed():
                self.verified = self.saved = self._placed()
                if self.verified:
                    self.size = self.written = os.fstat(self._fd).st_size
                return  # not verified: followers abort their clients
            await asyncio.sleep(self.POLL)

    def _placed(self) -> bool:
        """Whether our file was renamed into storage (still linked, and no longer at the
        partial path) rather than removed or left behind."""
        assert self._fd is not None
        ours = os.fstat(self._fd)
        try:
            there = os.stat(self.partial).st_ino
        except FileNotFoundError:
            there = None
        return ours.st_nlink > 0 and there != ours.st_ino


class Downloads:
    """The downloads in progress in this process, by what they download."""

    def __init__(
        self,
        storage: FileSystemStorage,
        persist: Persist,
        upstream: Upstream,
        chunk_size: int,
        share: bool = True,
        cooldown: float = 0.0,
    ) -> None:
        self.cooldown = cooldown  # seconds a failed remote artifact is passed over
        self.storage = storage
        self.share = share  # False: every request downloads on its own (the old streamer)
        self.persist = persist
        self.upstream = upstream
        self.chunk_size = chunk_size
        self.active: dict[Hashable, Progress] = {}
        self.started = 0  # upstream downloads this process began (for tests and metrics)

    def written(self, src: RemoteSource) -> int:
        """How many bytes of `src` a download running in this process, or another
        process's partial file, already holds (0: none runs)."""
        running = self.active.get(key_of(src))
        if running is not None:
            return running.written
        if src.sha256 is None or src.policy == "streamed":
            return 0
        try:
            return self.storage.partial_of(src.sha256).stat().st_size
        except FileNotFoundError:
            return 0

    def join(self, src: RemoteSource) -> Progress:
        """The download of `src` in progress, or a new one; the caller follows it."""
        key = key_of(src)
        download = self.active.get(key) if self.share else None
        if download is None or not download.reusable:
            download = self._begin(src)
            self.active[key] = download
            download.task.add_done_callback(self._forget(key, download))  # type: ignore[union-attr]
        download.followers += 1
        download.joins += 1
        return download

    def _begin(self, src: RemoteSource) -> Progress:
        """Download `src` here, or, when another process already does (it holds the claim
        on the download's partial file), follow that process's file."""
        claimed: tuple[Path, Claim] | None = None
        name = partial_name(src) if self.share and src.policy != "streamed" else None
        if name is not None:
            try:
                partial = self.storage.new_partial(name)
                claim = self.storage.locks.claim(partial)
            except OSError as exc:
                raise storage_error(exc) from exc
            elsewhere = self._elsewhere(src, partial, claim)
            if elsewhere is not None:
                elsewhere.task = asyncio.ensure_future(elsewhere.watch())
                return elsewhere
            assert claim is not None
            claimed = partial, claim
        download = SharedDownload(
            src, self.storage, self.persist, self.upstream, self.chunk_size, self.cooldown, claimed
        )
        self.started += 1
        download.task = asyncio.ensure_future(download.run())
        return download

    def _elsewhere(
        self, src: RemoteSource, partial: Path, claim: Claim | None
    ) -> TailedDownload | TailedPullThrough | None:
        """The follower of another process's download of `src`, when it runs one (it
        holds the claim) or already saved the artifact since we resolved; else None."""
        if src.sha256 is None:
            if claim is not None:
                return None  # whether it was saved meanwhile is asked as the download runs
            return TailedPullThrough(src, self.storage, self.persist, self.chunk_size, partial)
        # Placed and settled: saved by another worker since we resolved. Placed and not
        # settled, with nobody holding the claim: a save that failed; download it again.
        placed = self.storage.path_of(artifact_name(src.sha256)).exists() and not (
            claim is not None and self.storage.marker_of(partial, src.sha256).exists()
        )
        if claim is not None and not placed:
            return None
        if claim is not None:
            claim.release()
        return TailedDownload(src, self.storage, self.chunk_size)

    def _forget(self, key: Hashable, download: Progress) -> Callable[..., None]:
        def forget() -> None:
            if self.active.get(key) is download:
                del self.active[key]

        def done(_: object) -> None:
            if download.saved:
                # A request that resolved while the save was running still finds it
                # here (and reads the stored file) instead of downloading again.
                asyncio.get_running_loop().call_later(SAVED_GRACE, forget)
            else:
                forget()

        return done

    async def aclose(self, timeout: float = 30.0) -> None:
        """Shutdown: streamed downloads stop; on_demand ones get `timeout` seconds to finish
        and be saved, then are cancelled (their partial files are removed either way)."""
        for download in self.active.values():
            if not download.keep and download.task is not None:
                download.task.cancel()
        pending = [d.task for d in self.active.values() if d.task is not None and not d.task.done()]
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=timeout)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)
