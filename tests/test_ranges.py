from __future__ import annotations

import pytest

from pulp_content.service.errors import RangeError
from pulp_content.service.ranges import ByteRange, parse_range


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        ("bytes=0-0", 10, ByteRange(0, 0)),
        ("bytes=9-9", 10, ByteRange(9, 9)),
        ("bytes=2-", 10, ByteRange(2, 9)),
        ("bytes=-3", 10, ByteRange(7, 9)),
        ("bytes=-30", 10, ByteRange(0, 9)),
        ("bytes=5-100", 10, ByteRange(5, 9)),
        ("BYTES=1-2", 10, ByteRange(1, 2)),
    ],
)
def test_satisfiable(header: str, size: int, expected: ByteRange) -> None:
    assert parse_range(header, size) == expected


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "bytes=",
        "bytes=-",
        "bytes=3-1",
        "items=0-1",
        "bytes=0-1,3-4",
        "bytes=a-b",
        "bytes=" + "9" * 40 + "-",
    ],
)
def test_ignored_headers_mean_the_whole_body(header: str | None) -> None:
    assert parse_range(header, 10) is None


@pytest.mark.parametrize(("header", "size"), [("bytes=10-", 10), ("bytes=-0", 10), ("bytes=0-", 0)])
def test_unsatisfiable_carries_the_size(header: str, size: int) -> None:
    with pytest.raises(RangeError) as caught:
        parse_range(header, size)
    assert caught.value.size == size


def test_content_range() -> None:
    assert ByteRange(7, 9).content_range(10) == "bytes 7-9/10"
    assert ByteRange(7, 9).length == 3
