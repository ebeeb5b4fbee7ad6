"""The representation headers shared by stored and streamed responses."""

from __future__ import annotations

import base64
import datetime as dt
import functools
import mimetypes
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

from aiohttp import hdrs, web

# A compressed file is served as what it is: announcing Content-Encoding would make
# clients decompress it and then fail the checksum of the file they asked for.
_ENCODING_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "br": "application/x-brotli",
    "compress": "application/x-compress",
}
_EXTRA_TYPES = {
    ".rpm": "application/x-rpm",
    ".deb": "application/vnd.debian.binary-package",
    ".whl": "application/zip",
    ".iso": "application/x-iso9660-image",
    ".zst": "application/zstd",
    ".asc": "text/plain",
    ".sig": "application/pgp-signature",
}
FALLBACK_TYPE = "application/octet-stream"
# Python's own table only: the machine's /etc/mime.types would make answers vary by host.
_TYPES = mimetypes.MimeTypes(filenames=())


def content_type(relative_path: str) -> str:
    """The Content-Type of a file by its extension, compound ones (`.xml.gz`) included."""
    if relative_path.endswith("/"):
        return "text/html"  # a directory's page (a pull-through PyPI simple page)
    name = relative_path.rsplit("/", 1)[-1].lower()
    for ext, kind in _EXTRA_TYPES.items():
        if name.endswith(ext):
            return kind
    guessed, encoding = _TYPES.guess_type(name, strict=False)
    if encoding:
        return _ENCODING_TYPES.get(encoding, FALLBACK_TYPE)
    return guessed or FALLBACK_TYPE


def etag_of(sha256: str) -> str:
    """A strong ETag: the bytes are the sha256, so equal tags mean equal bytes."""
    return f'"{sha256}"'


def repr_digest(sha256: str) -> str:
    """RFC 9530 Repr-Digest for a known sha256 hex digest."""
    return "sha-256=:" + base64.b64encode(bytes.fromhex(sha256)).decode() + ":"


def representation_headers(
    relative_path: str, sha256: str | None, last_modified: dt.datetime | None
) -> dict[str, str]:
    """Content-Type, ETag, Repr-Digest, Last-Modified and Accept-Ranges for a file (a dict
    of its own: callers add to it)."""
    return dict(_representation(relative_path, sha256, last_modified))


# Files whose representation headers are kept: a warm request for a stored file would
# otherwise guess its type, encode its digest and format its date every time.
REMEMBERED = 4096


@functools.lru_cache(maxsize=REMEMBERED)
def _representation(
    relative_path: str, sha256: str | None, last_modified: dt.datetime | None
) -> Mapping[str, str]:
    headers: dict[str, str] = {
        hdrs.CONTENT_TYPE: content_type(relative_path),
        hdrs.ACCEPT_RANGES: "bytes",
    }
    if sha256:
        headers[hdrs.ETAG] = etag_of(sha256)
        headers["Repr-Digest"] = repr_digest(sha256)
    if last_modified is not None:
        headers[hdrs.LAST_MODIFIED] = http_date(last_modified)
    return headers


def http_date(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")


def not_modified(
    request: web.BaseRequest, sha256: str | None, last_modified: dt.datetime | None
) -> bool:
    """RFC 9110 §13.1: If-None-Match wins over If-Modified-Since when both are sent."""
    if_none_match = request.headers.get(hdrs.IF_NONE_MATCH)
    if if_none_match is not None:
        if not sha256:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")[:64]}
        return "*" in tags or etag_of(sha256) in tags
    since = _parsed_date(request.headers, hdrs.IF_MODIFIED_SINCE)
    if since is None or last_modified is None:
        return False
    return last_modified.replace(microsecond=0) <= since


def range_applies(
    request: web.BaseRequest, sha256: str | None, last_modified: dt.datetime | None
) -> bool:
    """RFC 9110 §13.1.5: with If-Range, a Range counts only if the validator still matches."""
    if_range = request.headers.get(hdrs.IF_RANGE)
    if if_range is None:
        return True
    if if_range.startswith('"'):
        return bool(sha256) and if_range == etag_of(sha256 or "")
    when = _parsed_date(request.headers, hdrs.IF_RANGE)
    return (
        when is not None
        and last_modified is not None
        and (last_modified.replace(microsecond=0) == when)
    )


def _parsed_date(headers: Mapping[str, str], name: str) -> dt.datetime | None:
    text = headers.get(name)
    if not text or len(text) > 64:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)
