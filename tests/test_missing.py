"""MissingUpstream: an upstream's 404 of a pull-through file, kept for its max age."""

from __future__ import annotations

from pulp_content.service.missing import MissingUpstream
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import DistributionRef, RemoteRef, RemoteSource

DIST = DistributionRef("d", "d")


def pulled(url: str, max_age: int | None = None, source: str = "pull_through") -> RemoteSource:
    config = RemoteConfig(1, "r", "http://u/", "on_demand", metadata_max_age=max_age)
    ref = RemoteRef(None, config, url, None, {})
    return RemoteSource(url, DIST, source, url, None, (ref,))


def test_a_404_is_kept_for_the_remotes_metadata_max_age() -> None:
    now = [100.0]
    missing = MissingUpstream(clock=lambda: now[0])
    src = pulled("http://u/InRelease", max_age=30)
    assert not missing.known(src)
    missing.note(src)
    assert missing.known(src)
    now[0] += 29.9
    assert missing.known(src)
    now[0] += 0.2
    assert not missing.known(src)


def test_without_a_max_age_of_its_own_the_default_applies() -> None:
    now = [0.0]
    missing = MissingUpstream(clock=lambda: now[0])
    missing.note(pulled("http://u/a"))
    now[0] += 299
    assert missing.known(pulled("http://u/a"))
    now[0] += 2
    assert not missing.known(pulled("http://u/a"))


def test_only_pull_through_is_kept_and_the_bound_holds() -> None:
    missing = MissingUpstream(bound=3)
    missing.note(pulled("http://u/p", source="publication"))
    assert not missing.known(pulled("http://u/p", source="publication"))
    for i in range(5):
        missing.note(pulled(f"http://u/{i}"))
    assert [i for i in range(5) if missing.known(pulled(f"http://u/{i}"))] == [2, 3, 4]
