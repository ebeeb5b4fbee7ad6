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
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from aiohttp import ClientResponse, hdrs

from pulp_content.service.errors import ContentError, DigestMismatch, StorageError, UpstreamError
from pulp_content.service.locks import Claim
from pulp_content.service.models import DIGESTS
from pulp_content.service.resolve import RemoteRef, RemoteSource
from pulp_content.service.storage import FileSystemStorage, artifact_name
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


def key_of(src: RemoteSource) -> Hashable:
    """What makes two requests ask for the same download."""
    if src.content_artifact_id is not None:
        return ("content_artifact", src.content_artifact_id)
    return ("url", src.remote_artifacts[0].url)


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
    def open(self) -> IO[bytes]:
        """The file being written (or, once saved, the stored artifact) for reading."""

    async def opened(self) -> IO[bytes]:
        """`open()`, as soon as there is a file to open."""
        return self.open()

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

    def open(self) -> IO[bytes]:
        """The file being written (or, once saved, the stored artifact) for reading."""
        try:
            return open(self.path, "rb")
        except FileNotFoundError:
            if not (self.verified and self.keep):
                raise
            # Moved into storage (being saved, or saved) between our check and the open.
            sha256 = self.src.sha256 or ""
            return open(self.storage.path_of(artifact_name(sha256)), "rb")

    # -- the download ----------------------------------------------------------------------
    async def run(self) -> None:
        """Try each remote artifact until one answers; then copy, verify and save.

        Never raises: whatever fails (the upstream, the disk, the database), the partial
        file goes, the claim is dropped and every follower wakes to the verdict."""
        try:
            await self._attempts()
        except OSError as exc:
            self._failed(storage_error(exc))
        except ContentError as exc:  # StorageError, DatabaseUnavailable: nobody's upstream
            self._failed(exc)
        except Exception as exc:
            log.exception("download of %s failed", self.src.path)
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
                    log.warning("download of %s failed after its start: %s", ra.url, exc)
                    if ra.id is not None:
                        await self.persist.mark_failed(ra)
                    return
                log.warning("%s failed before the first byte: %s", ra.url, exc)
                failure = exc
                if ra.id is not None and (exc.status is None or exc.status >= 500):
                    await self.persist.mark_failed(ra)
        assert failure is not None
        self.started.set_exception(failure)

    def _failed(self, exc: ContentError) -> None:
        """A failure of this service's own (storage, database), not of the upstream."""
        self.error = exc
        if self.verified:
            log.warning("could not save %s (its clients got it whole): %s", self.src.path, exc)
        else:
            log.warning("download of %s stopped: %s", self.src.path, exc)
        if not self.started.done():
            self.started.set_exception(exc)

    def _end(self) -> None:
        """Release everything the run held; each step whatever the one before did."""
        try:
            with contextlib.suppress(OSError):  # a failed flush: the bytes are dropped anyway
                self._out.close()
            with contextlib.suppress(OSError):
                self.path.unlink(missing_ok=True)  # gone already when saved (moved)
        finally:
            try:
                self.claim.release()
            finally:
                self._close()

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
            try:
                async with self.upstream.get(ra.config, ra.url, headers) as answer:
                    if verifier is None:
                        if self.size is None:
                            self.size = answer.content_length
                        self.content_type = answer.content_type
                        verifier = Verifier(ra.url, self.size, expected_digests(self.src, ra))
                        validator = resumable(answer)
                        self.started.set_result(None)
                    elif not continues(answer, self.written, self.size):
                        raise UpstreamError(ra.url, "could not resume at the same offset")
                    await self._copy(answer, verifier)
                    break
            except UpstreamError as exc:
                if (
                    verifier is None
                    or isinstance(exc, DigestMismatch)
                    or exc.timeout
                    or validator is None
                    or resumes >= MAX_RESUMES
                ):
                    raise
                resumes += 1
                log.info("resuming %s at byte %d after: %s", ra.url, self.written, exc)
        digests = verifier.finish()
        self._out.close()
        if self.size is None:
            self.size = verifier.received
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

    def open(self) -> IO[bytes]:
        try:
            return open(self.partial, "rb")
        except FileNotFoundError:
            pass
        try:
            return open(self.final, "rb")
        except FileNotFoundError:
            # Neither written nor placed any more: the other process's download failed.
            raise UpstreamError(self.src.path, "the download in another worker failed") from None

    async def opened(self) -> IO[bytes]:
        """The other process's file, once it exists (it may not have created it yet)."""
        with contextlib.suppress(ContentError):
            await self.started  # a failure is the caller's to see, from `started`
        return self.open()

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
        on the artifact's partial file), follow that process's file."""
        claimed: tuple[Path, Claim] | None = None
        if self.share and src.sha256 and src.size is not None and src.policy != "streamed":
            try:
                partial = self.storage.new_partial(src.sha256)
                claim = self.storage.locks.claim(partial)
            except OSError as exc:
                raise storage_error(exc) from exc
            # Placed and settled: saved by another worker since we resolved. Placed and not
            # settled, with nobody holding the claim: a save that failed; download it again.
            placed = self.storage.path_of(artifact_name(src.sha256)).exists() and not (
                claim is not None and self.storage.marker_of(partial, src.sha256).exists()
            )
            if claim is None or placed:
                # Another worker downloads it, or already saved it since we resolved.
                if claim is not None:
                    claim.release()
                tailed = TailedDownload(src, self.storage, self.chunk_size)
                tailed.task = asyncio.ensure_future(tailed.watch())
                return tailed
            claimed = partial, claim
        download = SharedDownload(
            src, self.storage, self.persist, self.upstream, self.chunk_size, self.cooldown, claimed
        )
        self.started += 1
        download.task = asyncio.ensure_future(download.run())
        return download

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
