from __future__ import annotations

import pytest

from pulp_content.service.paths import (
    BadPath,
    clean_base_path,
    clean_relative_path,
    nested,
    split_request_path,
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
