"""Revalidations on their own: a clock the test moves, an upstream that answers what the
test says, and the database side recorded in memory (unit tests of one unit). Storage
and its claims are the real filesystem ones."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
from collections.abc import AsyncIterator

import pytest

from pulp_content.service.errors import UpstreamError
from pulp_content.service.freshness import UpstreamState
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.revalidate import Revalidations, claim_name, conditional_headers
from pulp_content.service.storage import FileSystemStorage
from pulp_content.service.types import ArtifactRef, LocalArtifact, Pulled, RemoteRef

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
URL = "http://upstream.test/debian/dists/stable/InRelease"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> dt.datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += dt.timedelta(seconds=seconds)


class Answer:
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.headers = headers or {}
        self.content_length = None


class Upstream:
    """Answers each GET with `status` (>= 400 raised, as HttpUpstream does), after
    `gate` is set; records the headers sent."""

    def __init__(self, status: int = 304, error: UpstreamError | None = None) -> None:
        self.status = status
        self.error = error
        self.sent: list[dict[str, str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.asked = asyncio.Event()  # set at the first request
        self.requests = 0

    @contextlib.asynccontextmanager
    async def get(self, remote, url, headers=None) -> AsyncIterator[Answer]:  # type: ignore[no-untyped-def]
        self.requests += 1
        self.sent.append(dict(headers or {}))
        self.asked.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        yield Answer(self.status, {"ETag": '"v1"', "Cache-Control": "max-age=60"})


class Refresh:
    """The database side, in memory: what was confirmed, and the copy as it is now."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.confirmed: list[UpstreamState] = []
        self.copy: LocalArtifact | None = None

    async def repulled(self, hit: LocalArtifact) -> LocalArtifact | None:
        return self.copy or hit

    async def confirm(self, pulled: Pulled, said: UpstreamState) -> None:
        self.confirmed.append(said)
        assert self.copy is not None
        self.copy = dataclasses.replace(
            self.copy, pulled=dataclasses.replace(pulled, validated_at=self.clock())
        )

    async def replace(self, hit, download) -> None:  # type: ignore[no-untyped-def]
        raise AssertionError("no new bytes in these tests")


def copy(max_age: int | None = 300, max_stale: int = 86_400) -> LocalArtifact:
    remote = RemoteConfig(1, "debian", "http://upstream.test/debian/", "on_demand")
    ra = RemoteRef(7, remote, URL, 10, {})
    pulled = Pulled(ra, 3, T0, max_age, max_stale, '"v1"', "Thu, 01 Jan 2026 00:00:00 GMT")
    return LocalArtifact(URL, None, "pull_through", "dists/stable/InRelease",
                         ArtifactRef("ab" * 32, 10, "artifact/ab/x"), None, pulled)  # fmt: skip


@pytest.fixture
def world(tmp_path):
    clock = Clock()
    refresh = Refresh(clock)
    refresh.copy = copy()
    storage = FileSystemStorage(tmp_path)
    upstream = Upstream()
    revalidations = Revalidations(storage, upstream, refresh, 1024, clock=clock)  # type: ignore[arg-type]
    yield clock, refresh, upstream, revalidations
    storage.locks.close()


async def test_a_fresh_copy_is_served_as_it_is(world):
    clock, refresh, upstream, revalidations = world
    clock.advance(299)
    assert await revalidations.current(refresh.copy) is refresh.copy
    assert upstream.requests == 0


async def test_a_stale_copy_is_asked_about_with_its_validators(world):
    clock, refresh, upstream, revalidations = world
    clock.advance(300)
    served = await revalidations.current(refresh.copy)
    assert upstream.requests == 1
    assert upstream.sent[0] == {
        "If-None-Match": '"v1"',
        "If-Modified-Since": "Thu, 01 Jan 2026 00:00:00 GMT",
    }
    assert refresh.confirmed == [UpstreamState('"v1"', "Thu, 01 Jan 2026 00:00:00 GMT", 60)]
    assert served.pulled.validated_at == clock.now  # its age reset
    assert await revalidations.current(served) is served  # fresh again
    assert upstream.requests == 1


async def test_concurrent_requests_make_one_revalidation(world):
    clock, refresh, upstream, revalidations = world
    clock.advance(1000)
    upstream.gate.clear()
    first = asyncio.ensure_future(revalidations.current(refresh.copy))
    await upstream.asked.wait()  # the first one is at the upstream
    stale = refresh.copy
    others = await asyncio.gather(*(revalidations.current(stale) for _ in range(20)))
    assert all(o is stale for o in others)  # the copy there is, at once
    upstream.gate.set()
    assert (await first).pulled.validated_at == clock.now
    assert upstream.requests == 1


async def test_offline_never_asks(world):
    clock, refresh, upstream, _ = world
    offline = Revalidations(
        _.storage,
        upstream,
        refresh,
        1024,
        offline=True,
        clock=clock,  # type: ignore[arg-type]
    )
    clock.advance(10 * 86_400)
    assert await offline.current(refresh.copy) is refresh.copy
    assert upstream.requests == 0


@pytest.mark.parametrize(
    "error",
    [
        UpstreamError(URL, "cannot connect"),
        UpstreamError(URL, "timed out", timeout=True),
        UpstreamError(URL, "answered 503", status=503),
    ],
)
async def test_a_failing_upstream_leaves_the_stale_copy_served_up_to_max_stale(world, error):
    clock, refresh, upstream, revalidations = world
    upstream.error = error
    clock.advance(300 + 86_400)
    assert await revalidations.current(refresh.copy) is refresh.copy
    assert refresh.confirmed == []  # not confirmed: asked again next time
    clock.advance(1)
    with pytest.raises(UpstreamError):
        await revalidations.current(refresh.copy)


async def test_an_upstream_4xx_is_its_answer(world):
    clock, refresh, upstream, revalidations = world
    upstream.error = UpstreamError(URL, "answered 404", status=404)
    clock.advance(301)
    with pytest.raises(UpstreamError) as raised:
        await revalidations.current(refresh.copy)
    assert raised.value.status == 404


async def test_another_worker_revalidating_leaves_this_one_serving_the_copy(world):
    clock, refresh, upstream, revalidations = world
    clock.advance(301)
    storage = revalidations.storage
    held = storage.locks.claim(storage.new_partial(claim_name(refresh.copy.pulled)))
    # flock is per open file: a claim taken here is another worker's as far as it goes.
    assert held is not None
    try:
        assert await revalidations.current(refresh.copy) is refresh.copy
        assert upstream.requests == 0
    finally:
        held.release()


def test_no_validators_no_conditional_headers():
    pulled = dataclasses.replace(copy().pulled, etag=None, last_modified=None)
    assert conditional_headers(pulled) == {}


async def test_after_a_failure_the_copy_is_served_without_asking_for_a_while(world):
    clock, refresh, upstream, revalidations = world
    upstream.error = UpstreamError(URL, "timed out", timeout=True)
    clock.advance(301)
    assert await revalidations.current(refresh.copy) is refresh.copy
    clock.advance(29)
    assert await revalidations.current(refresh.copy) is refresh.copy
    assert upstream.requests == 1  # not a second timeout to wait for
    upstream.error = None
    clock.advance(1)
    served = await revalidations.current(refresh.copy)
    assert upstream.requests == 2 and served.pulled.validated_at == clock.now
