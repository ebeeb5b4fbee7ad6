"""The caching headers an answer gets, by what it is and who may see it."""

from __future__ import annotations

import datetime as dt

import pytest

from pulp_content.service.caching import Lifetimes, caching_of, vary_of
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import (
    ArtifactRef,
    GuardRef,
    Listing,
    LocalArtifact,
    Pulled,
    RemoteRef,
)

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
LIFETIMES = Lifetimes(immutable=86_400, short=60)
STORED = ArtifactRef("ab" * 32, 10, "artifact/ab/x")


def pulled_copy(relative: str, max_age: int | None) -> LocalArtifact:
    remote = RemoteConfig(1, "r", "http://up/", "on_demand")
    pulled = Pulled(RemoteRef(1, remote, "http://up/" + relative, 10, {}), 1,
                    NOW - dt.timedelta(seconds=40), max_age, 86_400)  # fmt: skip
    return LocalArtifact("/p", None, "pull_through", relative, STORED, None, pulled)


@pytest.mark.parametrize(
    ("resolution", "cache_control", "age"),
    [
        (LocalArtifact("/p", None, "publication", "pool/a.deb", STORED), "max-age=86400", None),
        (LocalArtifact("/p", None, "publication", "dists/x/Release", STORED), "max-age=60", None),
        (LocalArtifact("/p", None, "repository_version", "a.deb", STORED), "max-age=60", None),
        (pulled_copy("pool/a.deb", None), "max-age=86400", 40),
        (pulled_copy("InRelease", 300), "max-age=300", 40),
        (Listing("/p", None, "publication", "dir"), "max-age=60", None),
    ],
)
def test_what_an_answer_may_be_kept_for(resolution, cache_control, age):
    caching = caching_of(resolution, None, False, LIFETIMES, NOW)
    assert caching.cache_control == f"public, {cache_control}"
    assert caching.age == age and caching.vary is None


@pytest.mark.parametrize(
    ("guard", "from_proxy", "vary"),
    [
        (GuardRef("header", {"header": "X-Token"}), False, "X-Token"),
        (GuardRef("basic", {}), False, "Authorization"),
        (GuardRef("x509", {}), True, "X-Client-Cert"),
        (GuardRef("x509", {}), False, None),  # the TLS handshake, not a header
        (GuardRef("signed-url", {}), False, None),  # the URL itself differs
    ],
)
def test_a_guarded_answer_is_private_and_names_the_header_its_guard_reads(guard, from_proxy, vary):
    stored = LocalArtifact("/p", None, "publication", "a.deb", STORED)
    caching = caching_of(stored, guard, from_proxy, LIFETIMES, NOW)
    assert caching.cache_control == "private, max-age=86400"
    assert vary_of(guard, from_proxy) == caching.vary == vary
