"""The resolution cache's rules, without a database: bounds, what a change drops, and
answers computed across a change."""

from __future__ import annotations

import os

from pulp_content.service.cache import ResolutionCache
from pulp_content.service.invalidation import Changes, apply, parse_notification
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import (
    NOT_DOWNLOADED,
    ArtifactRef,
    DistributionRef,
    Listing,
    LocalArtifact,
    Located,
    NotFound,
    RemoteRef,
    RemoteSource,
)

DIST = DistributionRef("d", "d")


def stored(path: str) -> Located:
    return Located(LocalArtifact(path, DIST, "publication", path, ArtifactRef("a" * 64, 1, "x")))


def lazy(path: str, ca: int) -> Located:
    config = RemoteConfig(id=1, name="r", url="http://u/", policy="on_demand")
    ref = RemoteRef(1, config, "u", 1, {})
    return Located(RemoteSource(path, DIST, "publication", path, ca, (ref,)))


def live_cache(size: int = 10, negative: int = 10) -> ResolutionCache:
    cache = ResolutionCache(size, negative)
    cache.set_live(True)
    return cache


def test_nothing_is_kept_or_read_while_changes_are_not_followed():
    cache = ResolutionCache(10, 10)
    cache.put("/a", stored("/a"), cache.epoch)
    assert cache.get("/a") is None
    cache.set_live(True)
    cache.put("/a", stored("/a"), cache.epoch)
    assert cache.get("/a") == stored("/a")
    cache.set_live(False)  # the connection that follows changes is lost
    assert cache.get("/a") is None


def test_an_answer_computed_across_a_change_is_not_kept():
    cache = live_cache()
    started = cache.epoch
    apply(cache, Changes(True))  # committed while the answer was being computed
    cache.put("/a", stored("/a"), started)
    assert cache.get("/a") is None
    started = cache.epoch
    cache.set_live(True)  # went live meanwhile: changes before it were never reported
    cache.put("/a", stored("/a"), started)
    assert cache.get("/a") is None


def test_a_content_artifact_change_drops_only_what_depends_on_it():
    cache = live_cache()
    answers = {
        "/stored": stored("/stored"),
        "/lazy1": lazy("/lazy1", 1),
        "/lazy2": lazy("/lazy2", 2),
        "/dir/": Located(Listing("/dir/", DIST)),
        "/gone": Located(NotFound("/gone", DIST, reason="no content at this path")),
        "/nowhere": Located(NotFound("/nowhere", DIST, reason=NOT_DOWNLOADED)),
    }
    for key, value in answers.items():
        cache.put(key, value, cache.epoch)
    apply(cache, Changes(False, frozenset({1})))
    kept = {key for key in answers if cache.get(key) is not None}
    # Listings show stored sizes; the 404 of content without a remote may now resolve.
    assert kept == {"/stored", "/lazy2", "/gone"}
    apply(cache, Changes(True))
    assert len(cache) == 0


def test_404s_have_their_own_bound_and_never_push_out_answers():
    cache = live_cache(size=3, negative=5)
    for i in range(3):
        cache.put(f"/s{i}", stored(f"/s{i}"), cache.epoch)
    for i in range(100):
        cache.put(f"/m{i}", Located(NotFound(f"/m{i}")), cache.epoch)
    assert all(cache.get(f"/s{i}") is not None for i in range(3))
    assert [i for i in range(100) if cache.get(f"/m{i}") is not None] == list(range(95, 100))
    cache.get("/s0")  # most recently used: the next answer pushes out /s1
    cache.put("/s3", stored("/s3"), cache.epoch)
    assert cache.get("/s1") is None and cache.get("/s0") is not None


def test_a_path_that_stops_being_a_404_is_not_answered_twice():
    cache = live_cache(size=1, negative=5)
    cache.put("/x", Located(NotFound("/x")), cache.epoch)
    cache.put("/x", stored("/x"), cache.epoch)
    cache.put("/y", stored("/y"), cache.epoch)  # pushes /x out of the answers
    assert cache.get("/x") is None  # and not the old 404 either


def resident() -> int:
    """This process's resident memory, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_a_million_distinct_404s_stay_within_the_default_bound():
    """1,000,000 distinct missing paths: the cache holds its bound's worth, in well under
    the 150 MiB a worker may use (unbounded, they would take about 400 MiB)."""
    cache = live_cache(100_000, 50_000)
    before = resident()
    for i in range(1_000_000):
        path = f"/pulp/content/some/where/missing-{i:07d}.rpm"
        cache.put(path, Located(NotFound(path, reason="no distribution")), cache.epoch)
    assert len(cache) == 50_000
    assert resident() - before < 50 * 1024 * 1024


def test_notifications():
    assert parse_notification("12 *") == (12, None)
    assert parse_notification("13 42") == (13, 42)


async def test_an_answer_that_depends_on_the_query_is_never_kept():
    """A pull-through remote that forwards the query: each query is its own upstream URL."""
    from pulp_content.service.cache import CachedLocator

    asked: list[tuple[str, str]] = []

    async def locate(path: str, query: str) -> Located:
        asked.append((path, query))
        return Located(NotFound(path + "?" + query), cacheable=query == "")

    locator = CachedLocator(locate, live_cache())
    for query in ("a=1", "a=2", "a=1"):
        assert (await locator("/p", query)).resolution.path == "/p?" + query
    assert len(asked) == 3
    await locator("/p")
    await locator("/p")
    assert len(asked) == 4  # the answer without a query dependence is kept
