"""What followers of a download read (`Progress`), what makes two requests ask for the
same download (`key_of`, `partial_name`), and what downloading needs from the database
(`Persist`). Nothing here touches the ORM."""

from __future__ import annotations

import abc
import asyncio
import collections
import hashlib
from collections.abc import Hashable
from typing import IO, Protocol

from pulp_content.service.errors import (
    UpstreamError,
)
from pulp_content.service.types import Absent, ArtifactRef, RemoteRef, RemoteSource
from pulp_content.service.verify import Download


class Persist(Protocol):
    """What downloading needs from the database, passed in by the app."""

    async def commit(self, src: RemoteSource, ra: RemoteRef, download: Download) -> None: ...

    async def mark_failed(self, src: RemoteSource, ra: RemoteRef) -> None:
        """Record that `ra` (a remote artifact of `src`) failed; this process's next
        request for `src` already knows it."""

    def close(self) -> None: ...

    async def stored(self, ra: RemoteRef) -> ArtifactRef | Absent | None:
        """The artifact a pull-through fetch of `ra` was saved as, if one was; or the
        upstream's 404 for it, while it stands."""

    async def note_missing(self, ra: RemoteRef, seconds: float) -> None:
        """The upstream answered 404 for the pull-through URL `ra`: so it stands, for
        every process, for `seconds`."""


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
        # The newest chunks and their offsets, oldest first: the ones not yet on disk, and
        # always the newest one. Followers take them from memory; what lies before the
        # first is in the file.
        self.recent: collections.deque[tuple[int, bytes]] = collections.deque()
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
        self.running = False  # the task has begun its work (set by `_run`)
        # Everyone left before the task began: `run` lets go at once, through its own
        # clean-up (a task cancelled before its first step never runs its `finally`).
        self.unwanted = False

    async def changed(self) -> None:
        """Wait until more bytes, the verdict or a failure arrive."""
        await self._changed.wait()

    def _announce(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    @property
    def reusable(self) -> bool:
        """Still running, or finished and saved: a newcomer can follow it."""
        if self.unwanted:
            return False
        return self.task is None or not self.task.done() or self.saved

    def start(self) -> bool:
        """Begin the work, once its first follower holds a handle on the file (see
        `open`); whether this call began it."""
        if self.task is not None:
            return False
        self.task = asyncio.ensure_future(self._run())
        return True

    async def _run(self) -> None:
        self.running = True
        await self.run()

    @abc.abstractmethod
    async def run(self) -> None:
        """Download, or watch another process download; never raises. Checks `unwanted`
        first thing, inside its clean-up."""

    def leave(self) -> None:
        """A follower is gone; a streamed download nobody follows any more stops."""
        self.followers -= 1
        if self.followers == 0 and not self.keep and self.task and not self.task.done():
            if self.running:
                self.task.cancel()
            else:
                self.unwanted = True

    @abc.abstractmethod
    async def open(self) -> IO[bytes] | None:
        """A handle taken the moment a follower joins, before the start (the file of a
        streamed download goes as soon as it ends; an open one outlives that). None:
        nothing to hold yet. Followers read it with `os.pread` only: a handle may share
        its file offset with the writer's."""

    async def reader(self, early: IO[bytes] | None) -> IO[bytes]:
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
