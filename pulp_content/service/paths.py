"""Clean relative paths: what a base path or a requested path may look like."""

from __future__ import annotations

import re

from pulp_content.service.errors import InvalidInput

MAX_PATH = 2048
# Percent-encoded dot, slash, backslash or NUL in the raw URL: a decoder could turn them
# into traversal, so they are refused before decoding.
_ENCODED_HOSTILE = re.compile(r"%(2e|2f|5c|00)", re.IGNORECASE)


class BadPath(InvalidInput):
    """A path that is not a clean relative path."""


def clean_segments(path: str, *, what: str = "path") -> list[str]:
    """Split a slash-separated path into its segments, refusing anything unclean."""
    if len(path) > MAX_PATH:
        raise BadPath(f"{what} is longer than {MAX_PATH} characters")
    if any(ch in path for ch in "\x00\r\n\\") or any(ord(ch) < 0x20 for ch in path):
        raise BadPath(f"{what} contains a control character or backslash")
    if not path.isascii() and any("\ud800" <= ch <= "\udfff" for ch in path):
        # Bytes that are not UTF-8 arrive as surrogate escapes; no database can store them.
        raise BadPath(f"{what} is not valid UTF-8")
    segments = path.split("/")
    for segment in segments:
        if segment in ("", ".", ".."):
            raise BadPath(f"{what} {path!r} has an empty, '.' or '..' segment")
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

    `raw_path` is the path as sent (still percent-encoded), `decoded` the same after
    decoding; both must be clean.
    """
    if _ENCODED_HOSTILE.search(raw_path):
        raise BadPath("path contains an encoded '.', '/', '\\' or NUL")
    trailing = decoded.endswith("/")
    body = decoded.strip("/")
    if not body:
        return [], True
    return clean_segments(body), trailing


def nested(a: str, b: str) -> bool:
    """Whether base paths are equal or one lies inside the other, by whole segments."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
