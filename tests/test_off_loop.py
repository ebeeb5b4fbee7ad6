"""Nothing in the request path waits on the disk or the database on the event loop: a
claim whose database does not answer, and every file a download or a stored answer
opens, are off it. Checked with a database that hangs and with the interpreter's audit
events, not with timings."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from pulp_content.service.download import Downloads
from pulp_content.service.locks import AdvisoryLocks, FileLocks
from pulp_content.service.serve import serve
from pulp_content.service.storage import FileSystemStorage, artifact_name
from pulp_content.service.types import ArtifactRef, LocalArtifact
from tests.test_download import (
    BODY,
    CHUNK,
    SHA256,
    Answer,
    FakeUpstream,
    RecordingPersist,
    finish,
    source,
)

_watched: dict[str, object] = {"thread": None, "opened": None}


def _audit(event: str, args: tuple[object, ...]) -> None:
    opened = _watched["opened"]
    if event != "open" or opened is None or threading.get_ident() != _watched["thread"]:
        return
    if not isinstance(args[0], int):  # a file object on an open descriptor: no disk
        opened.append(str(args[0]))  # type: ignore[attr-defined]


sys.addaudithook(_audit)  # for good (hooks cannot be removed); idle unless watching


@contextlib.contextmanager
def opened_on_the_loop() -> Iterator[list[str]]:
    """The files opened on this thread (the test's event loop) inside the block."""
    opened: list[str] = []
    _watched.update(thread=threading.get_ident(), opened=opened)
    try:
        yield opened
    finally:
        _watched.update(thread=None, opened=None)


class HangingConnection:
    """A database connection that answers each lock statement once `answer` is set."""

    closed = False

    def __init__(self, answer: threading.Event) -> None:
        self.answer = answer

    def cursor(self) -> HangingConnection:
        return self

    def __enter__(self) -> HangingConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def execute(self, sql: str, params: tuple[int]) -> None:
        assert self.answer.wait(timeout=30), "the test never let the database answer"

    def fetchone(self) -> tuple[bool]:
        return (True,)

    def close(self) -> None:
        self.closed = True


def hanging_database(
    tmp_path: Path, answer: threading.Event
) -> tuple[AdvisoryLocks, FileSystemStorage, FakeUpstream, Downloads]:
    """Downloads whose claims wait on a database that answers once `answer` is set."""
    locks = AdvisoryLocks(lambda: HangingConnection(answer))
    storage = FileSystemStorage(tmp_path / "storage", locks)
    upstream = FakeUpstream({"http://a/f": [Answer()]})
    registry = Downloads(storage, RecordingPersist(storage), upstream, CHUNK)  # type: ignore[arg-type]
    return locks, storage, upstream, registry


async def test_a_claim_the_database_is_slow_to_answer_leaves_the_loop_serving(
    tmp_path: Path,
) -> None:
    answer = threading.Event()
    locks, _storage, upstream, registry = hanging_database(tmp_path, answer)
    joining = asyncio.ensure_future(finish(registry, source("http://a/f")))
    ticks = 0
    for _ in range(20):  # the loop keeps turning while the claim waits
        await asyncio.sleep(0.001)
        ticks += 1
    assert ticks == 20 and not joining.done()
    assert upstream.requests == []  # nothing downloads before the claim is ours
    answer.set()
    download = await joining
    assert download.verified  # type: ignore[attr-defined]
    locks.close()


async def test_a_download_opens_and_writes_no_file_on_the_loop(tmp_path: Path) -> None:
    storage = FileSystemStorage(tmp_path / "storage", FileLocks())
    upstream = FakeUpstream({"http://a/f": [Answer()]})
    registry = Downloads(storage, RecordingPersist(storage), upstream, CHUNK)  # type: ignore[arg-type]
    with opened_on_the_loop() as opened:
        download = await finish(registry, source("http://a/f"))
    assert download.verified  # type: ignore[attr-defined]
    assert storage.path_of(artifact_name(SHA256)).read_bytes() == BODY
    assert opened == []


@pytest.mark.parametrize(("headers", "status"), [({}, 200), ({"Range": "bytes=10-19"}, 206)])
async def test_a_stored_file_is_opened_and_read_off_the_loop(
    tmp_path: Path, headers: dict[str, str], status: int
) -> None:
    storage = FileSystemStorage(tmp_path / "storage", FileLocks())
    name = artifact_name("ab" + "c" * 62)
    path = storage.path_of(name)
    path.parent.mkdir(parents=True)
    path.write_bytes(bytes(range(100)))
    hit = LocalArtifact("/pulp/content/x/f", artifact=ArtifactRef("ab" + "c" * 62, 100, name))
    request = make_mocked_request("GET", "/pulp/content/x/f", headers=headers)
    with opened_on_the_loop() as opened:
        response = await serve(request, hit, storage)
    assert response.status == status
    assert response.body == (bytes(range(10, 20)) if headers else bytes(range(100)))  # type: ignore[attr-defined]
    assert opened == []


async def test_a_request_gone_while_the_claim_is_taken_leaves_no_claim_behind(
    tmp_path: Path,
) -> None:
    answer = threading.Event()
    locks, storage, upstream, registry = hanging_database(tmp_path, answer)
    joining = asyncio.ensure_future(registry.join(source("http://a/f", policy="streamed")))
    await asyncio.sleep(0.01)
    joining.cancel()  # the client hung up while the claim was being taken
    with contextlib.suppress(asyncio.CancelledError):
        await joining
    answer.set()
    for _ in range(1000):  # the claim comes back to nobody: the download ends unstarted
        if not registry.active and not registry._beginning:
            break
        await asyncio.sleep(0.005)
    assert not registry.active
    locks.flush()
    assert locks._held == set()  # released
    assert storage.partials() == []
    assert upstream.requests == []  # nothing was downloaded for nobody
    locks.close()
