"""One upstream download per lazy artifact, shared by every client that asks for it.

A `SharedDownload` runs as its own task, not inside any client's request: it tries the
remote artifacts in order until one answers 2xx, then writes the body to a partial
file beside storage while running digests update, and announces every chunk. Clients
(`stream.follow`) read that file from their own offset at their own pace, so a slow
client neither makes the service buffer the upstream in memory nor slows the others,
and a client that arrives late first gets the bytes already on disk, then the live
ones. Nothing here touches the ORM: saving goes through `Persist`.

This module is the registry (`Downloads`): it begins a download here, or follows one
another process runs. The parts: `verify` (Verifier), `progress` (what followers read),
`shared` (the download itself), `follow` (another process's).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeGuard

from pulp_content.service.errors import DigestMismatch
from pulp_content.service.follow import TailedDownload, TailedPullThrough
from pulp_content.service.peers import PeerDownload, Peers
from pulp_content.service.progress import Persist, Progress, key_of, partial_name
from pulp_content.service.shared import SharedDownload, storage_error
from pulp_content.service.storage import Storage, artifact_name
from pulp_content.service.types import RemoteSource
from pulp_content.service.upstream import Upstream

if TYPE_CHECKING:
    from pulp_content.service.metrics import Metrics

log = logging.getLogger(__name__)


SAVED_GRACE = 30.0  # seconds a saved download stays joinable


class Downloads:
    """The downloads in progress in this process, by what they download."""

    def __init__(
        self,
        storage: Storage,
        persist: Persist,
        upstream: Upstream,
        chunk_size: int,
        cooldown: float = 0.0,
        metrics: Metrics | None = None,
        peers: Peers | None = None,
    ) -> None:
        self.metrics = metrics  # downloads in flight, followers, verification failures
        # Other hosts' downloads, read from them (service.peers); None: never.
        self.peers = peers
        self.cooldown = cooldown  # seconds a failed remote artifact is passed over
        self.storage = storage
        self.persist = persist
        self.upstream = upstream
        self.chunk_size = chunk_size
        self.active: dict[Hashable, Progress] = {}
        self._beginning: dict[Hashable, asyncio.Future[Progress]] = {}  # claims being taken
        self._waiters: dict[Hashable, int] = {}  # requests waiting for one of those
        self.started = 0  # upstream downloads this process began (for tests and metrics)

    def follows(self, change: int) -> None:
        """A request began (1) or stopped (-1) following a download."""
        if self.metrics is not None:
            self.metrics.download_followers.inc(change)

    async def written(self, src: RemoteSource) -> int:
        """How many bytes of `src` a download running in this process, or another
        process's partial file, already holds (0: none runs)."""
        running = self.active.get(key_of(src))
        if running is not None:
            return running.written
        if src.sha256 is None or src.policy == "streamed":
            return 0
        return await asyncio.to_thread(_size_of, self.storage.partial_of(src.sha256))

    async def join(self, src: RemoteSource) -> tuple[Progress, IO[bytes] | None]:
        """The download of `src` in progress, or a new one, and a handle on its file; the
        caller follows it, closes the handle and leaves.

        The handle is taken before the download can end (a streamed file goes the
        moment its download does, an open one outlives that): a new download starts
        only once its first follower holds one. Requests that ask at once while its
        claim is being taken wait for that one download instead of beginning others."""
        key = self._key(src)
        while True:
            download = await self._joinable(key, src)
            download.followers += 1
            download.joins += 1
            try:
                early = await download.open()
            except BaseException as exc:
                if isinstance(exc, FileNotFoundError) and download.saved:
                    # Saved here a moment ago, and reclaimed since: download it again.
                    download.followers -= 1
                    download.joins -= 1
                    self._drop(key, download)
                    continue
                self._start(key, download)  # so that it ends, and lets go of its file and claim
                download.leave()
                raise
            self._start(key, download)
            return download, early

    async def _joinable(self, key: Hashable, src: RemoteSource) -> Progress:
        """The download of `key` to follow: this process's, or a new one."""
        download = self._running(key)
        while download is None or not download.reusable:
            beginning = self._beginning.get(key)
            if beginning is None:
                beginning = asyncio.ensure_future(self._begin(key, src))
                self._beginning[key] = beginning
            download = await self._wait(key, beginning)
        return download

    def _drop(self, key: Hashable, download: Progress) -> None:
        if self.active.get(key) is download:
            del self.active[key]

    def _start(self, key: Hashable, download: Progress) -> None:
        if download.start():
            download.task.add_done_callback(self._forget(key, download))  # type: ignore[union-attr]
            if self.metrics is not None and _from_upstream(download):
                self._measure(download, self.metrics)

    @staticmethod
    def _measure(download: SharedDownload, metrics: Metrics) -> None:
        """Count an upstream download of this process while it runs, and its verdict."""
        metrics.downloads_in_flight.inc()

        def ended(_: object) -> None:
            metrics.downloads_in_flight.dec()
            if isinstance(download.error, DigestMismatch):
                metrics.verification_failures.labels(download.failed_remote or "").inc()

        download.task.add_done_callback(ended)  # type: ignore[union-attr]

    async def _wait(self, key: Hashable, beginning: asyncio.Future[Progress]) -> Progress:
        """The download `beginning` makes; shielded, so one waiter leaving does not stop
        it. When the last waiter leaves before it is made, nobody would start it (and let
        go of its claim): it is started as if everyone had left it."""
        self._waiters[key] = self._waiters.get(key, 0) + 1
        try:
            return await asyncio.shield(beginning)
        except asyncio.CancelledError:
            if self._waiters[key] == 1:
                beginning.add_done_callback(lambda done: self._abandon(key, done))
            raise
        finally:
            self._waiters[key] -= 1
            if not self._waiters[key]:
                del self._waiters[key]

    def _abandon(self, key: Hashable, done: asyncio.Future[Progress]) -> None:
        if done.cancelled() or done.exception() is not None:
            return
        download = done.result()
        if download.task is None and not download.followers:
            download.followers = 1  # as if its last follower left: see `Progress.leave`
            self._start(key, download)
            download.leave()

    async def _begin(self, key: Hashable, src: RemoteSource) -> Progress:
        try:
            download = self.active[key] = await self._new(src)
            return download
        finally:
            del self._beginning[key]

    def _key(self, src: RemoteSource) -> Hashable:
        """What requests that share a download have in common."""
        return key_of(src)

    async def _new(self, src: RemoteSource) -> Progress:
        """Download `src` here, or, when another process already does (it holds the claim
        on the download's partial file), follow that process's file. The claim, the look
        for a save made meanwhile and the file's creation are one hop to the lock thread."""
        name = self._shared_name(src)
        if name is None:
            download = await SharedDownload.create(
                src, self.storage, self.persist, self.upstream, self.chunk_size, self.cooldown
            )
        else:
            partial = self.storage.partial_of(name)
            try:
                claimed = await self.storage.locks.aclaim(
                    partial, functools.partial(self._open_here, src, partial)
                )
            except OSError as exc:
                raise storage_error(exc) from exc
            if claimed is None:  # another process downloads it
                if not self.storage.local and not await asyncio.to_thread(partial.exists):
                    # Another host's (its file is on its own disk): read from that host.
                    return await self._from_peer(src, partial, name)
                return self._follower(src, partial)
            claim, out = claimed
            if out is None:  # another process saved it since we resolved
                claim.release()
                return TailedDownload(src, self.storage, self.chunk_size)
            download = SharedDownload(
                src,
                self.storage,
                self.persist,
                self.upstream,
                self.chunk_size,
                self.cooldown,
                (partial, claim),
                out,
            )
        self.started += 1
        return download

    async def _from_peer(self, src: RemoteSource, partial: Path, name: str) -> SharedDownload:
        """The download another host runs, read from that host; downloaded here too when
        that host cannot be asked (it did not say where it is, or failed us lately)."""
        peers = self.peers
        if peers is not None and peers.usable_for(name):
            holder = await self.storage.locks.aholder(partial)
            if holder is not None:
                download = await PeerDownload.create(
                    peers.source(src, holder, name),
                    self.storage,
                    self.persist,
                    self.upstream,
                    self.chunk_size,
                    self.cooldown,
                )
                download.peers, download.name = peers, name
                return download
        return await self._elsewhere(src)

    async def running_here(self, src: RemoteSource) -> bool:
        """Whether a process of this host downloads `src` now (for another host to read:
        service.peers)."""
        if isinstance(self.active.get(key_of(src)), SharedDownload):
            return True
        name = self._shared_name(src)
        if name is None or self.storage.local:
            return False
        return await asyncio.to_thread(self.storage.partial_of(name).exists)

    async def _elsewhere(self, src: RemoteSource) -> SharedDownload:
        """A download of our own, under a fresh name, of what another host downloads."""
        download = await SharedDownload.create(
            src, self.storage, self.persist, self.upstream, self.chunk_size, self.cooldown
        )
        self.started += 1
        return download

    def _running(self, key: Hashable) -> Progress | None:
        """The download of `key` this process runs (or just saved) for a newcomer to
        follow, if there is one."""
        download = self.active.get(key)
        return download if download is not None and download.reusable else None

    def _shared_name(self, src: RemoteSource) -> str | None:
        """The partial file name other processes know `src`'s download by (they follow
        the one that holds its claim); None: a fresh name, nobody follows it. A streamed
        file is removed as its download ends, so it is never followed across processes."""
        return partial_name(src) if src.policy != "streamed" else None

    def _follower(self, src: RemoteSource, partial: Path) -> TailedDownload | TailedPullThrough:
        """The follower of the download of `src` another process runs."""
        if src.sha256 is None:
            return TailedPullThrough(src, self.storage, self.persist, self.chunk_size, partial)
        return TailedDownload(src, self.storage, self.chunk_size)

    def _open_here(self, src: RemoteSource, partial: Path) -> IO[bytes] | None:
        """With the claim on `partial` held (on the lock thread): its file, created for
        this process's download; None when the artifact was placed by another worker since
        we resolved. Placed and not settled, with nobody holding the claim, is a save that
        failed: download it again. (A pull-through file's place is unknown until the end:
        whether it was saved meanwhile is asked as the download runs.)"""
        if src.sha256 is not None:
            placed = self.storage.path_of(artifact_name(src.sha256)).exists()
            if placed and not self.storage.marker_of(partial, src.sha256).exists():
                return None
        return self.storage.open_partial(partial)

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


def _from_upstream(download: Progress) -> TypeGuard[SharedDownload]:
    """A download of this process from an upstream (not another process's, nor another
    host's read from it)."""
    return isinstance(download, SharedDownload) and not isinstance(download, PeerDownload)


def _size_of(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
