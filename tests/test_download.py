"""The shared download's logic against a fake upstream: no sockets, no database.

The fake plays an `Upstream` (scripted answers per URL) and a `Persist` (records what
would be saved); storage is a real directory. Failover, resume, corrupt bytes and
cancellation are decided here byte by byte; the functional tests check the same
through real sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import pytest
from multidict import CIMultiDict

from pulp_content.service.download import Downloads
from pulp_content.service.errors import DigestMismatch, EndedElsewhere, UpstreamError
from pulp_content.service.locks import FileLocks
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.storage import FileSystemStorage, artifact_name
from pulp_content.service.types import RemoteRef, RemoteSource
from pulp_content.service.verify import Download

BODY = bytes(range(256)) * 1024  # 256 KiB
SHA256 = hashlib.sha256(BODY).hexdigest()
CHUNK = 64 * 1024


class FakeBody:
    def __init__(self, data: bytes, break_after: int | None, gate: asyncio.Event | None) -> None:
        self.data, self.break_after, self.gate = data, break_after, gate

    async def iter_chunked(self, size: int) -> AsyncIterator[bytes]:
        for offset in range(0, len(self.data), size):
            if self.break_after is not None and offset >= self.break_after:
                raise aiohttp.ClientPayloadError("connection lost mid-body")
            if self.gate is not None and offset:
                await self.gate.wait()
            yield self.data[offset : offset + size]


@dataclass
class Answer:
    """One scripted upstream answer."""

    body: bytes = BODY
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    break_after: int | None = None  # bytes, then the connection drops
    gate: asyncio.Event | None = None  # chunks after the first wait for it


class FakeResponse:
    """What the download reads of an aiohttp.ClientResponse."""

    def __init__(self, url: str, answer: Answer) -> None:
        self.url = url
        self.status = answer.status
        self.headers = CIMultiDict(answer.headers)
        self.content_length = len(answer.body)
        self.content_type = "application/octet-stream"
        self.content = FakeBody(answer.body, answer.break_after, answer.gate)


class FakeUpstream:
    """An Upstream whose answers are scripted per URL, in order; records every request."""

    def __init__(self, script: dict[str, list[Answer]]) -> None:
        self.script = script
        self.requests: list[tuple[str, dict[str, str]]] = []

    @contextlib.asynccontextmanager
    async def get(
        self, remote: RemoteConfig, url: str, headers: Mapping[str, str] | None = None
    ) -> AsyncIterator[FakeResponse]:
        self.requests.append((url, dict(headers or {})))
        answer = self.script[url].pop(0)
        if answer.status >= 400:
            raise UpstreamError(url, f"answered {answer.status}", status=answer.status)
        yield FakeResponse(url, answer)

    async def aclose(self) -> None:
        pass


class RecordingPersist:
    """A Persist that places the file as the real one does and records it, no rows."""

    def __init__(self, storage: FileSystemStorage) -> None:
        self.storage = storage
        self.committed: list[tuple[bytes, dict[str, str]]] = []
        self.failed: list[str] = []

    async def commit(self, src: RemoteSource, ra: RemoteRef, download: Download) -> None:
        await asyncio.to_thread(self._commit, download)  # on a thread, as OrmPersist does

    def _commit(self, download: Download) -> None:
        assert download.partial is not None
        self.committed.append((download.partial.read_bytes(), download.digests))
        self.storage.place(download.partial, download.digests["sha256"])

    async def mark_failed(self, src: RemoteSource, ra: RemoteRef) -> None:
        self.failed.append(ra.url)

    def close(self) -> None:
        pass


def source(*urls: str, policy: str = "on_demand", sha256: str = SHA256) -> RemoteSource:
    remote = RemoteConfig(id=1, name="r", url="http://upstream.invalid/", policy=policy)
    refs = tuple(
        RemoteRef(i, remote, url, len(BODY), {"sha256": sha256}) for i, url in enumerate(urls, 1)
    )
    return RemoteSource("/pulp/content/x/f", None, "publication", "f", 7, refs, len(BODY), sha256)


@pytest.fixture
def storage(tmp_path: Path) -> FileSystemStorage:
    return FileSystemStorage(tmp_path / "storage", FileLocks())


def downloads(storage: FileSystemStorage, upstream: FakeUpstream) -> Downloads:
    return Downloads(storage, RecordingPersist(storage), upstream, CHUNK)  # type: ignore[arg-type]


async def finish(registry: Downloads, src: RemoteSource) -> object:
    download, handle = await registry.join(src)
    assert download.task is not None
    await download.task
    if handle is not None:
        handle.close()
    download.leave()
    return download


async def test_a_download_is_verified_and_handed_over(storage: FileSystemStorage) -> None:
    upstream = FakeUpstream({"http://a/f": [Answer()]})
    registry = downloads(storage, upstream)
    download = await finish(registry, source("http://a/f"))
    persist = registry.persist
    assert isinstance(persist, RecordingPersist)
    assert download.verified is True
    assert persist.committed == [(BODY, persist.committed[0][1])]
    assert persist.committed[0][1]["sha256"] == SHA256
    assert storage.partials() == []
    assert storage.path_of(artifact_name(SHA256)).read_bytes() == BODY


async def test_failover_to_the_next_remote_artifact(storage: FileSystemStorage) -> None:
    upstream = FakeUpstream({"http://a/f": [Answer(status=503)], "http://b/f": [Answer()]})
    registry = downloads(storage, upstream)
    await finish(registry, source("http://a/f", "http://b/f"))
    persist = registry.persist
    assert isinstance(persist, RecordingPersist)
    assert [url for url, _ in upstream.requests] == ["http://a/f", "http://b/f"]
    assert persist.failed == ["http://a/f"]  # a 5xx marks the remote artifact failed
    assert [body for body, _ in persist.committed] == [BODY]


async def test_a_404_is_not_marked_failed(storage: FileSystemStorage) -> None:
    upstream = FakeUpstream({"http://a/f": [Answer(status=404)], "http://b/f": [Answer()]})
    registry = downloads(storage, upstream)
    await finish(registry, source("http://a/f", "http://b/f"))
    assert registry.persist.failed == []  # type: ignore[attr-defined]


async def test_a_dropped_connection_resumes_with_range_and_if_range(
    storage: FileSystemStorage,
) -> None:
    validator = {"Accept-Ranges": "bytes", "ETag": '"v1"'}
    rest = BODY[2 * CHUNK :]
    resumed = {**validator, "Content-Range": f"bytes {2 * CHUNK}-{len(BODY) - 1}/{len(BODY)}"}
    upstream = FakeUpstream(
        {
            "http://a/f": [
                Answer(headers=validator, break_after=2 * CHUNK),
                Answer(body=rest, status=206, headers=resumed),
            ]
        }
    )
    registry = downloads(storage, upstream)
    await finish(registry, source("http://a/f"))
    assert upstream.requests[1][1] == {"Range": f"bytes={2 * CHUNK}-", "If-Range": '"v1"'}
    assert [body for body, _ in registry.persist.committed] == [BODY]  # type: ignore[attr-defined]


async def test_no_resume_without_a_validator(storage: FileSystemStorage) -> None:
    upstream = FakeUpstream({"http://a/f": [Answer(break_after=CHUNK)]})
    registry = downloads(storage, upstream)
    download = await finish(registry, source("http://a/f"))
    assert isinstance(download.error, UpstreamError)
    assert len(upstream.requests) == 1
    assert registry.persist.committed == []  # type: ignore[attr-defined]
    assert storage.partials() == []


async def test_corrupt_bytes_are_never_handed_over(storage: FileSystemStorage) -> None:
    wrong = BODY[:-1] + b"\x00"
    upstream = FakeUpstream({"http://a/f": [Answer(body=wrong)]})
    registry = downloads(storage, upstream)
    download = await finish(registry, source("http://a/f"))
    assert isinstance(download.error, DigestMismatch)
    assert download.verified is False
    assert registry.persist.committed == []  # type: ignore[attr-defined]
    assert registry.persist.failed == ["http://a/f"]  # type: ignore[attr-defined]
    assert storage.partials() == []


async def test_followers_share_one_download(storage: FileSystemStorage) -> None:
    gate = asyncio.Event()
    upstream = FakeUpstream({"http://a/f": [Answer(gate=gate)]})
    registry = downloads(storage, upstream)
    src = source("http://a/f")
    # Both ask while the claim is being taken (on the lock thread): one download.
    (first, one), (second, two) = await asyncio.gather(registry.join(src), registry.join(src))
    assert first is second and first.followers == 2
    gate.set()
    assert first.task is not None
    await first.task
    assert len(upstream.requests) == 1
    assert one is not None and two is not None
    assert os.pread(two.fileno(), len(BODY), 0) == BODY  # a handle of its own on the file
    one.close()
    two.close()


async def test_a_cancelled_download_leaves_no_partial_and_no_claim(
    storage: FileSystemStorage,
) -> None:
    gate = asyncio.Event()  # never set: the download waits after its first chunk
    upstream = FakeUpstream({"http://a/f": [Answer(gate=gate)]})
    registry = downloads(storage, upstream)
    src = source("http://a/f", policy="streamed")
    download, handle = await registry.join(src)
    assert handle is not None
    handle.close()
    await download.started
    while download.written == 0:
        await download.changed()
    path = download.path
    assert path.exists()
    download.leave()  # the last follower of a streamed download leaves: it stops
    assert download.task is not None
    with contextlib.suppress(asyncio.CancelledError):
        await download.task
    assert not path.exists()
    assert not storage.locks.held(path)
    assert registry.persist.committed == []  # type: ignore[attr-defined]


async def test_a_download_another_process_ended_before_it_was_followed_is_asked_again(
    storage: FileSystemStorage,
) -> None:
    """Another process held the claim, then let go without a stored file before this one
    saw any byte: not the upstream's verdict. The request asks again, and downloads."""
    from pulp_content.service.shared import SharedDownload
    from pulp_content.service.stream import _started

    other = FileLocks()  # flocks exclude each other between open files: another process
    held = other.claim(storage.new_partial(SHA256))
    assert held is not None
    upstream = FakeUpstream({"http://a/f": [Answer()]})
    registry = downloads(storage, upstream)
    starting = asyncio.ensure_future(_started(registry, source("http://a/f")))
    while not registry.active:  # following the other process's (empty) partial file
        await asyncio.sleep(0.001)
    assert not starting.done() and upstream.requests == []
    held.release()
    other.flush()
    download, handle = await starting
    assert isinstance(download, SharedDownload) and len(upstream.requests) == 1
    assert download.task is not None
    await download.task
    assert handle is not None
    handle.close()
    download.leave()
    assert download.verified


async def test_a_stored_file_removed_while_a_claim_is_held_is_downloaded_again(
    storage: FileSystemStorage,
) -> None:
    """Found in CI (reclaim under serve --workers 2): a reclaim holds the claim while it
    removes the stored file. Another worker saw the file placed, then found it gone when
    it opened it, and answered 502 ("the download left nothing to read"). It now asks
    again and, once the claim is dropped, downloads it."""
    from pulp_content.service.follow import TailedDownload
    from pulp_content.service.shared import SharedDownload
    from pulp_content.service.stream import _started

    name = artifact_name(SHA256)
    other = FileLocks()  # another process holding the claim
    held = other.claim(storage.new_partial(SHA256))
    assert held is not None
    upstream = FakeUpstream({"http://a/f": [Answer()]})
    registry = downloads(storage, upstream)
    download, handle = await registry.join(source("http://a/f"))
    assert isinstance(download, TailedDownload) and handle is None  # nothing there yet
    storage.path_of(name).parent.mkdir(parents=True, exist_ok=True)
    storage.path_of(name).write_bytes(BODY)  # placed, and about to be reclaimed
    await download.started  # it saw the stored file
    storage.remove(name)
    with pytest.raises(EndedElsewhere):
        await download.reader(handle)
    download.leave()
    assert not download.reusable  # never followed again
    held.release()
    other.flush()
    download, handle = await _started(registry, source("http://a/f"))
    assert isinstance(download, SharedDownload) and len(upstream.requests) == 1
    assert download.task is not None
    await download.task
    handle.close()
    download.leave()
    assert download.verified
