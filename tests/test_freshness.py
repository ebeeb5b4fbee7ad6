"""Which pull-through files are mutable, and how long a copy of one stays fresh."""

from __future__ import annotations

import pytest

from pulp_content.service.freshness import (
    DEFAULT_METADATA_MAX_AGE,
    format_patterns,
    is_mutable,
    max_age_of,
    parse_patterns,
    upstream_state,
)

MUTABLE = [
    "InRelease",  # a flat repository's, at the top
    "Release",
    "Release.gpg",
    "dists/bookworm/InRelease",
    "debian/dists/bookworm/main/binary-amd64/Packages.xz",
    "dists/bookworm/main/i18n/Translation-en.bz2",
    "./Packages",
    "sub/Packages.gz",
    "sub/Sources.xz",
    "repodata/repomd.xml",
    "os/x86_64/repodata/repomd.xml",
    "simple/requests/index.html",
    "pypi/simple/requests/",
    "index.json",
    "v2/lib/tags/list.json",
    "docs/index.html",
]
IMMUTABLE = [
    "pool/main/h/hello/hello_2.10-3_amd64.deb",
    "tinydeb_1.0_all.deb",
    "repodata/abc123-primary.xml.gz",
    "packages/ab/cd/requests-2.32.0-py3-none-any.whl",
    "Packagesfoo/x.deb",  # a directory named like metadata: its files are not
    "f.bin",
]


@pytest.mark.parametrize("path", MUTABLE)
def test_the_common_metadata_files_are_mutable_by_default(path):
    assert is_mutable(path)


@pytest.mark.parametrize("path", IMMUTABLE)
def test_packages_and_blobs_are_immutable_by_default(path):
    assert not is_mutable(path)


def test_a_remote_adds_its_own_patterns():
    assert not is_mutable("latest/manifest.txt")
    assert is_mutable("latest/manifest.txt", ["latest/*"])
    assert is_mutable("deep/latest/manifest.txt", ["latest/*"])  # at any depth
    assert is_mutable("a/b/VERSION", ["VERSION"])  # no slash: the file name
    assert not is_mutable("a/b/VERSION.txt", ["VERSION"])


def test_patterns_are_kept_one_a_line():
    assert format_patterns(["a/*", " ", "b"]) == "a/*\nb"
    assert format_patterns([]) is None
    assert parse_patterns("a/*\nb") == ("a/*", "b")
    assert parse_patterns(None) == ()


def test_an_immutable_file_has_no_max_age():
    assert max_age_of("pool/x.deb", (), 10, 0) is None


def test_the_remote_max_age_holds_unless_the_upstream_says_less():
    assert max_age_of("InRelease", (), None, None) == DEFAULT_METADATA_MAX_AGE
    assert max_age_of("InRelease", (), 60, None) == 60
    assert max_age_of("InRelease", (), 60, 600) == 60  # the upstream's longer: ours
    assert max_age_of("InRelease", (), 60, 5) == 5  # tighter: the upstream's


@pytest.mark.parametrize(
    ("headers", "lifetime"),
    [
        ({}, None),
        ({"Cache-Control": "max-age=30"}, 30),
        ({"Cache-Control": "public, max-age=30, s-maxage=10"}, 10),  # a shared cache
        ({"Cache-Control": "no-cache"}, 0),
        ({"Cache-Control": "no-store, max-age=100"}, 0),
        ({"Cache-Control": "max-age=oops"}, None),
        (
            {"Expires": "Thu, 01 Jan 2026 00:01:00 GMT", "Date": "Thu, 01 Jan 2026 00:00:00 GMT"},
            60,
        ),
        ({"Expires": "0"}, 0),  # invalid: already expired (RFC 9111 §5.3)
        ({"Cache-Control": "max-age=5", "Expires": "Thu, 01 Jan 2099 00:00:00 GMT"}, 5),
    ],
)
def test_the_upstream_lifetime(headers, lifetime):
    assert upstream_state(headers).max_age == lifetime


def test_the_upstream_validators_are_kept():
    said = upstream_state({"ETag": '"abc"', "Last-Modified": "Thu, 01 Jan 2026 00:00:00 GMT"})
    assert said.etag == '"abc"'
    assert said.last_modified == "Thu, 01 Jan 2026 00:00:00 GMT"


@pytest.mark.parametrize(("text", "offline"), [("1", True), ("True", True), ("off", False)])
def test_offline_is_a_yes_or_no_setting(text, offline):
    from pulp_content.service.config import load_settings

    assert load_settings({"PULP_CONTENT_OFFLINE": text}).offline is offline
    assert load_settings({}).offline is False


def test_a_wrong_offline_value_is_one_clear_error():
    from pulp_content.service.config import load_settings
    from pulp_content.service.errors import InvalidInput

    with pytest.raises(InvalidInput, match="PULP_CONTENT_OFFLINE must be true or false"):
        load_settings({"PULP_CONTENT_OFFLINE": "maybe"})


@pytest.mark.parametrize(
    ("url", "scope"),
    [
        ("http://m/debian/dists/stable/InRelease", "http://m/debian/dists/stable/"),
        (
            "http://m/debian/dists/stable/main/binary-amd64/Packages.xz",
            "http://m/debian/dists/stable/",
        ),
        ("http://m/flat/Release", "http://m/flat/"),
        ("http://m/os/repodata/repomd.xml", "http://m/os/repodata/"),
    ],
)
def test_files_that_change_together(url, scope):
    from pulp_content.service.freshness import sibling_scope

    assert sibling_scope(url) == scope
