"""Upstream URLs beside a remote's URL: encoded once, and never outside it."""

from __future__ import annotations

import pytest
from yarl import URL

from pulp_content.service.paths import BadPath
from pulp_content.service.remoteurl import beside, remote_base, stays_under, upstream_url

REMOTE = "http://127.0.0.1:8080/pt/sub/PULP_MANIFEST"


@pytest.mark.parametrize(
    ("relative", "url"),
    [
        ("f.bin", "http://127.0.0.1:8080/pt/sub/f.bin"),
        ("d/a b.bin", "http://127.0.0.1:8080/pt/sub/d/a%20b.bin"),
        ("f.bin?x=1", "http://127.0.0.1:8080/pt/sub/f.bin%3Fx=1"),  # a name, not a query
        ("h#1", "http://127.0.0.1:8080/pt/sub/h%231"),
        ("50%", "http://127.0.0.1:8080/pt/sub/50%25"),
        ("https:", "http://127.0.0.1:8080/pt/sub/https:"),
        ("100%25", "http://127.0.0.1:8080/pt/sub/100%2525"),  # decodes to no traversal
    ],
)
def test_each_segment_is_encoded_once(relative: str, url: str) -> None:
    assert upstream_url(REMOTE, relative) == url


@pytest.mark.parametrize(
    "relative",
    [
        "%2e%2e/secret.txt",  # what '%252e%252e' is after the one decoding
        "%2E%2E",
        "%252e%252e/secret.txt",  # decoded twice more by someone else
        "%25%32%65%25%32%65/secret.txt",  # '%2e%2e', spelt out
        "..%2fsecret.txt",
        "a%5c..%5csecret.txt",
        "a%00",
        "../secret.txt",
        "a/../../secret.txt",
        "a\\..\\secret.txt",
        "",
        "a//b",
    ],
)
def test_a_path_that_could_leave_the_remote_is_refused(relative: str) -> None:
    with pytest.raises(BadPath):
        upstream_url(REMOTE, relative)


def test_the_query_goes_along_only_when_given() -> None:
    assert upstream_url(REMOTE, "f.bin", "token=abc&x=1") == (
        "http://127.0.0.1:8080/pt/sub/f.bin?token=abc&x=1"
    )
    assert upstream_url(REMOTE, "f.bin") == "http://127.0.0.1:8080/pt/sub/f.bin"


def test_the_base_is_the_directory_of_the_remote_url() -> None:
    assert str(remote_base(REMOTE)) == "http://127.0.0.1:8080/pt/sub/"
    assert str(remote_base("http://h/pt/sub/")) == "http://h/pt/sub/"
    assert str(remote_base("http://h/file?q=1")) == "http://h/"


@pytest.mark.parametrize(
    ("url", "under"),
    [
        ("http://h:1/pt/sub/f.bin", True),
        ("http://h:1/pt/sub/d/f.bin", True),
        ("http://h:1/pt/sub/%2e%2e/secret.txt", False),  # yarl makes it /pt/secret.txt
        ("http://h:1/pt/sub/../secret.txt", False),
        ("http://h:1/pt/subway/f.bin", False),
        ("https://h:1/pt/sub/f.bin", False),
        ("http://h:2/pt/sub/f.bin", False),
        ("http://other:1/pt/sub/f.bin", False),
        ("http://u:p@h:1/pt/sub/f.bin", False),
    ],
)
def test_stays_under_compares_origin_and_normalised_path(url: str, under: bool) -> None:
    assert stays_under(URL(url), remote_base("http://h:1/pt/sub/")) is under


def test_beside_encodes_synced_names() -> None:
    assert beside(REMOTE, "q?dir/x.bin") == "http://127.0.0.1:8080/pt/sub/q%3Fdir/x.bin"
    assert beside(REMOTE, "dir/file-1.0.tar.gz") == (
        "http://127.0.0.1:8080/pt/sub/dir/file-1.0.tar.gz"
    )
