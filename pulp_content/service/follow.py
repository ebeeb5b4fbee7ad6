"""Following a download another process runs (it holds the claim on the partial
file): `TailedDownload` for an artifact whose sha256 is known, `TailedPullThrough` for a
pull-through file, whose name comes from its remote and URL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path
from typing import IO

from pulp_content.service.errors import (
    ContentError,
    EndedElsewhere,
    LackedUpstream,
    UpstreamError,
)
from pulp_content.service.progress import Persist, Progress
from pulp_content.service.storage import Storage, artifact_name
from pulp_content.service.types import Absent, ArtifactRef, RemoteSource

log = logging.getLogger(__name__)


class TailedDownload(Progress):
    """A download another process runs: follow its partial file by polling.

    The other process holds the claim on `<sha256>.partial` (`service.locks`) while it
    writes it; it renames the partial into storage once verified (an open file outlives
    the rename), or removes it and drops the claim on failure. Whether the claim is still
    held is asked only when the file has not grown since the last look.
    """

    POLL = 0.02
    ASK_EVERY = 0.25  # seconds between questions to the claims (a database round trip)

    def __init__(self, src: RemoteSource, storage: Storage, chunk_size: int) -> None:
        assert src.sha256 is not None and src.size is not None
        super().__init__(src, chunk_size, keep=True)
        self.storage = storage
        self._asked = 0.0
        self.partial = storage.partial_of(src.sha256)
        self.name = artifact_name(src.sha256)
        self.final = storage.path_of(self.name)  # on this disk; in a bucket, never there

    def _open_either(self) -> IO[bytes] | None:
        for path in (self.partial, self.final):  # placed between the two looks: see above
            with contextlib.suppress(FileNotFoundError):
                return open(path, "rb")
        return None

    async def open(self) -> IO[bytes] | None:
        # None: not begun yet; `reader` opens it once it has.
        return await asyncio.to_thread(self._open_either)

    async def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        handle = early if early is not None else await self.open()
        if handle is None:
            # Seen placed, and gone before it could be opened: removed again (a reclaim,
            # which holds the claim while it removes). Never followed again; the request
            # asks anew (`stream._started`), and may download it itself.
            self.saved = False
            raise EndedElsewhere(self.src.path, "the stored file went before it was read")
        return handle

    async def _gone(self) -> bool:
        """The other process stopped without placing the file."""
        now = time.monotonic()
        if now - self._asked < self.ASK_EVERY:
            return False
        self._asked = now
        if await self.storage.locks.aheld(self.partial):
            return False
        return not await asyncio.to_thread(self.storage.exists, self.name)

    def _look(self) -> tuple[bool, int | None]:
        """Whether the file is placed, and else how much of the partial is written (None:
        there is no partial file). The partial file is looked at first: in a bucket, the
        stored file is asked for only once the partial is gone (after the commit)."""
        try:
            return False, self.partial.stat().st_size
        except FileNotFoundError:  # placed, or removed: see above
            return self.storage.exists(self.name), None

    async def run(self) -> None:
        """Poll the other process's progress until the file is placed or abandoned (each
        look at the files on a thread, each question to the claims on the lock thread)."""
        try:
            if self.unwanted:
                return
            while True:
                placed, written = await asyncio.to_thread(self._look)
                if placed or written is not None:
                    break
                if await self._gone():
                    raise EndedElsewhere(self.src.path, "the download in another worker failed")
                await asyncio.sleep(self.POLL)
            self.started.set_result(None)
            while True:
                if placed:
                    self.written, self.verified, self.saved = self.size or 0, True, True
                    return
                if written is not None and written > self.written:
                    self.written = written
                    self._announce()
                elif await self._gone():
                    return  # not verified: followers abort their clients
                await asyncio.sleep(self.POLL)
                placed, written = await asyncio.to_thread(self._look)
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
        storage: Storage,
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

    async def open(self) -> None:
        return None  # the watcher opens the file once it exists

    async def reader(self, early: IO[bytes] | None) -> IO[bytes]:
        if self._stored is not None:
            return await asyncio.to_thread(open, self._stored, "rb")
        assert self._fd is not None, "open while anyone follows"
        # Duplicates share one file offset: followers read with os.pread, which does not
        # use it (unbuffered: no read-ahead that assumes the offset is its own).
        return os.fdopen(os.dup(self._fd), "rb", buffering=0)

    def leave(self) -> None:
        super().leave()
        if self.task is not None and self.task.done():
            self._drop()

    def _drop(self) -> None:
        if self.followers == 0 and self._fd is not None:
            os.close(self._fd)
            self._fd = None

    async def _claimed(self) -> bool:
        """Whether the other process still holds the claim (asked at most every
        ASK_EVERY seconds: on PostgreSQL it is a database round trip)."""
        now = time.monotonic()
        if now - self._asked < self.ASK_EVERY:
            return True
        self._asked = now
        return await self.storage.locks.aheld(self.partial)

    async def run(self) -> None:
        """Open the other process's file, or find its save; then follow it to its end.
        Started once its first byte is there (the file is made before the upstream
        answers, which may be a 404) or once it ended verified (an empty file)."""
        try:
            if self.unwanted:
                raise UpstreamError(self.src.path, "nobody follows it any more")
            await self._attach()
            if self._stored is None:
                await self._follow()
            else:
                self._start()
        except UpstreamError as exc:
            self.started.set_exception(exc)
        finally:
            self._close()
            self._drop()

    def _start(self) -> None:
        if not self.started.done():
            self.started.set_result(None)

    async def _attach(self) -> None:
        while True:
            with contextlib.suppress(FileNotFoundError):
                self._fd = await asyncio.to_thread(os.open, self.partial, os.O_RDONLY)
                return
            if not await self._claimed():
                break
            await asyncio.sleep(self.POLL)
        art = await self.persist.stored(self.src.remote_artifacts[0])
        if not isinstance(art, ArtifactRef):
            raise self._failure(art)
        if not self.storage.local:  # saved in a bucket: asked for again (and downloaded)
            raise EndedElsewhere(self.src.path, "saved by another worker meanwhile")
        self._stored = self.storage.path_of(art.storage_path)
        self.size = self.written = art.size
        self.sha256 = art.sha256
        self.verified = self.saved = True

    async def _follow(self) -> None:
        assert self._fd is not None
        while True:
            grown = (await asyncio.to_thread(os.fstat, self._fd)).st_size
            if grown > self.written:
                self.written = grown
                self._start()
                self._announce()
            elif not await self._claimed():
                self.verified = self.saved = await asyncio.to_thread(self._placed)
                if self.verified:
                    self.size = self.written = os.fstat(self._fd).st_size
                    self._start()
                elif not self.started.done():  # it failed before its first byte
                    raise self._failure(await self.persist.stored(self.src.remote_artifacts[0]))
                return  # not verified: followers abort their clients
            await asyncio.sleep(self.POLL)

    def _failure(self, found: ArtifactRef | Absent | None) -> UpstreamError:
        """The other process's download ended before its first byte, saving nothing: the
        upstream lacks the file (a 404 it recorded), someone else saved it meanwhile (the
        request asks again), or it failed."""
        if isinstance(found, Absent):
            return LackedUpstream(self.src.path)
        if found is not None:
            return EndedElsewhere(self.src.path, "saved by another worker meanwhile")
        return UpstreamError(self.src.path, "the download in another worker failed")

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
