"""Property-based tests: path normalisation and Range parsing hold for any input."""

from __future__ import annotations

import posixpath

from hypothesis import given
from hypothesis import strategies as st

from pulp_content.service.errors import RangeError
from pulp_content.service.paths import BadPath, split_request_path
from pulp_content.service.ranges import parse_range

segment = st.text(min_size=0, max_size=12)


@given(st.lists(segment, max_size=8), st.booleans())
def test_an_accepted_path_never_leaves_its_root(parts, trailing):
    raw = "/".join(parts) + ("/" if trailing else "")
    try:
        segments, _ = split_request_path(raw, raw)
    except BadPath:
        return
    for seg in segments:
        assert seg not in ("", ".", "..")
        assert "/" not in seg and "\x00" not in seg and "\\" not in seg
    joined = posixpath.normpath(posixpath.join("/root", *segments))
    assert joined == "/root" or joined.startswith("/root/")


@given(st.text(max_size=3000))
def test_any_text_is_either_refused_or_clean(raw):
    try:
        segments, _ = split_request_path(raw, raw)
    except BadPath:
        return
    assert all(seg and seg not in (".", "..") for seg in segments)


@given(st.text(max_size=60), st.integers(min_value=0, max_value=10**12))
def test_any_range_header_is_ignored_refused_or_in_bounds(header, size):
    try:
        result = parse_range(header, size)
    except RangeError as exc:
        assert exc.size == size
        return
    if result is not None:
        assert 0 <= result.start <= result.end < size
        assert result.length == result.end - result.start + 1


@given(st.integers(0, 10**9), st.integers(0, 10**9), st.integers(1, 10**9))
def test_well_formed_ranges(first, last, size):
    header = f"bytes={first}-{last}"
    try:
        result = parse_range(header, size)
    except RangeError:
        assert first >= size
        return
    if last < first:
        assert result is None
    else:
        assert result is not None
        assert (result.start, result.end) == (first, min(last, size - 1))


@given(st.integers(1, 10**9), st.integers(0, 10**9))
def test_suffix_ranges(suffix, size):
    try:
        result = parse_range(f"bytes=-{suffix}", size)
    except RangeError:
        assert size == 0
        return
    assert result is not None
    assert result.end == size - 1
    assert result.length == min(suffix, size)
