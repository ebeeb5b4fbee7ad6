from __future__ import annotations

import pytest

from pulp_content.service.paths import (
    MAX_REQUEST_SEGMENTS,
    MAX_SEGMENTS,
    BadPath,
    clean_base_path,
    clean_relative_path,
    nested,
    split_request_path,
    url_path,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a", "a"), ("/a/b/", "a/b"), (" a/b ", "a/b"), ("a.b/c-d_e", "a.b/c-d_e")],
)
def test_clean_base_path(text: str, expected: str) -> None:
    assert clean_base_path(text) == expected


@pytest.mark.parametrize("text", ["", "/", "a//b", "a/../b", "./a", "a/\x00", "a\\b", "x" * 3000])
def test_unclean_base_paths_are_refused(text: str) -> None:
    with pytest.raises(BadPath):
        clean_base_path(text)


@pytest.mark.parametrize("text", ["/abs", "a/../b", "..", "a//b", "a/\r\nb"])
def test_unclean_relative_paths_are_refused(text: str) -> None:
    with pytest.raises(BadPath):
        clean_relative_path(text)


@pytest.mark.parametrize("raw", ["a/%2e%2e/b", "a%2Fb", "a/%2E%2E", "a%00", "a%5c..%5cb"])
def test_encoded_traversal_is_refused_before_decoding(raw: str) -> None:
    with pytest.raises(BadPath):
        split_request_path(raw, raw)


def test_split_request_path() -> None:
    assert split_request_path("a/b/", "a/b/") == (["a", "b"], True)
    assert split_request_path("a/b", "a/b") == (["a", "b"], False)
    assert split_request_path("", "") == ([], True)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("base/./Release", (["base", "Release"], False)),  # apt and a flat repository
        ("base/././pkg.deb", (["base", "pkg.deb"], False)),  # dpkg-scanpackages' ./pkg.deb
        ("a//b", (["a", "b"], False)),
        ("a/b/.", (["a", "b"], True)),  # RFC 3986 §5.2.4: 'b/.' is 'b/'
        ("./", ([], True)),
        ("a/./", (["a"], True)),
    ],
)
def test_dot_and_empty_segments_are_removed(path: str, expected: tuple) -> None:
    assert split_request_path(path, path) == expected


@pytest.mark.parametrize("path", ["a/../b", "..", "a/..", "a/b/../../..", "./../a"])
def test_dot_dot_segments_are_refused_not_resolved(path: str) -> None:
    with pytest.raises(BadPath, match=r"'\.\.'"):
        split_request_path(path, path)


def test_request_segments_are_capped() -> None:
    fits = "/".join(["a"] * MAX_REQUEST_SEGMENTS)
    assert len(split_request_path(fits, fits)[0]) == MAX_REQUEST_SEGMENTS
    thousand = "/".join(["a"] * 1000)
    with pytest.raises(BadPath, match="segments"):
        split_request_path(thousand, thousand)


def test_relative_and_base_path_segments_are_capped() -> None:
    deep = "/".join(["d"] * (MAX_SEGMENTS + 1))
    with pytest.raises(BadPath, match="segments"):
        clean_relative_path(deep)
    with pytest.raises(BadPath, match="segments"):
        clean_base_path(deep)


@pytest.mark.parametrize(
    ("path", "encoded"),
    [
        ("/pulp/content/b/q?dir/", "/pulp/content/b/q%3Fdir/"),
        ("/pulp/content/b/h#dir/", "/pulp/content/b/h%23dir/"),
        ("/pulp/content/b/50%/", "/pulp/content/b/50%25/"),
        ("/pulp/content/b/a b+c;d=e@f:g/", "/pulp/content/b/a%20b+c;d=e@f:g/"),
        ("/pulp/content/b/café/", "/pulp/content/b/caf%C3%A9/"),
    ],
)
def test_url_path_encodes_what_is_not_a_path_character(path: str, encoded: str) -> None:
    assert url_path(path) == encoded


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("a", "a", True),
        ("a", "a/b", True),
        ("a/b", "a", True),
        ("a", "ab", False),
        ("a/b", "a/c", False),
        ("ab/c", "a", False),
    ],
)
def test_nested_by_whole_segments(a: str, b: str, overlap: bool) -> None:
    assert nested(a, b) is overlap
