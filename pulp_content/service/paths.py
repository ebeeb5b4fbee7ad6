"""Clean relative paths: what a base path or a requested path may look like."""

from __future__ import annotations

import re
from urllib.parse import quote

from pulp_content.service.errors import InvalidInput

MAX_PATH = 2048
# Each segment of a request is a candidate base path for the distribution lookup, so
# their number, not only the length, bounds the work one request costs.
MAX_SEGMENTS = 64
MAX_REQUEST_SEGMENTS = 2 * MAX_SEGMENTS  # a base path and a relative path below it
# Percent-encoded dot, slash, backslash or NUL in the raw URL: a decoder could turn them
# into traversal, so they are refused before decoding.
ENCODED_HOSTILE = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)
_CONTROL_OR_BACKSLASH = re.compile(r"[\x00-\x1f\\]")
# RFC 3986 §3.3: what a path segment may hold unencoded besides the unreserved
# characters (sub-delims, ':' and '@'); everything else is percent-encoded.
SEGMENT_SAFE = "!$&'()*+,;=:@"


class BadPath(InvalidInput):
    """A path that is not a clean relative path."""


def _check_text(path: str, what: str) -> None:
    if len(path) > MAX_PATH:
        raise BadPath(f"{what} is longer than {MAX_PATH} characters")
    if _CONTROL_OR_BACKSLASH.search(path):
        raise BadPath(f"{what} contains a control character or backslash")
    if not path.isascii() and any("\ud800" <= ch <= "\udfff" for ch in path):
        # Bytes that are not UTF-8 arrive as surrogate escapes; no database can store them.
        raise BadPath(f"{what} is not valid UTF-8")


def clean_segments(path: str, *, what: str = "path") -> list[str]:
    """Split a slash-separated path into its segments, refusing anything unclean."""
    _check_text(path, what)
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise BadPath(f"{what} {path!r} has an empty, '.' or '..' segment")
    if len(segments) > MAX_SEGMENTS:
        raise BadPath(f"{what} has more than {MAX_SEGMENTS} segments")
    return segments


def clean_base_path(text: str) -> str:
    """A distribution base path without surrounding slashes, e.g. 'fedora/40/x86_64'."""
    stripped = text.strip().strip("/")
    if not stripped:
        raise BadPath("base path must not be empty")
    return "/".join(clean_segments(stripped, what="base path"))


def clean_relative_path(text: str) -> str:
    """A content relative path such as 'dir/file.iso' (from a manifest line)."""
    if text.startswith("/"):
        raise BadPath(f"relative path {text!r} must not start with '/'")
    return "/".join(clean_segments(text, what="relative path"))


def split_request_path(raw_path: str, decoded: str) -> tuple[list[str], bool]:
    """The segments of a request path below the content prefix, and its trailing slash.

    `raw_path` is the path as sent (still percent-encoded), `decoded` the same decoded
    once. As RFC 3986 §5.2.4 removes dot segments, '.' and empty segments go (apt asks
    for `base/./Release` of a flat repository); '..' is refused, never resolved.
    """
    if ENCODED_HOSTILE.search(raw_path):
        raise BadPath("path contains an encoded '.', '/', '\\' or NUL")
    _check_text(decoded, "path")
    parts = decoded.split("/")
    if ".." in parts:
        raise BadPath("path has a '..' segment")
    segments = [part for part in parts if part not in ("", ".")]
    if len(segments) > MAX_REQUEST_SEGMENTS:
        raise BadPath(f"path has more than {MAX_REQUEST_SEGMENTS} segments")
    # A final '.' names its directory, as a final '/' does.
    trailing = not segments or parts[-1] in ("", ".")
    return segments, trailing


def url_path(path: str) -> str:
    """`path` (decoded) percent-encoded for a URL: a Location header, an upstream URL."""
    return quote(path, safe="/" + SEGMENT_SAFE)


def nested(a: str, b: str) -> bool:
    """Whether base paths are equal or one lies inside the other, by whole segments."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
