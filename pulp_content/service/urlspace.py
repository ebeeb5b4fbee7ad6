"""Where clients find content: the origin and the path prefix of the URL space (no Django,
no aiohttp), as Pulp's CONTENT_ORIGIN and CONTENT_PATH_PREFIX settings name them."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pulp_content.service.errors import InvalidInput
from pulp_content.service.paths import url_path
from pulp_content.service.text import check_text

CONTENT_PREFIX = "/pulp/content/"
# What `serve` answers beside the content prefix; a prefix must never shadow them.
ROOT_PATHS = ("/health", "/livez", "/metrics", "/readyz")
# Letters, digits and `-._~` (RFC 3986 unreserved): a prefix that needs no encoding, so
# the service compares it with request paths as they are, encoded or decoded.
_PREFIX = re.compile(r"(/[A-Za-z0-9._~-]+)+/")
ORIGIN_EXAMPLE = "scheme://host[:port], such as https://content.example.com"


def check_prefix(text: str, name: str) -> str:
    """The content path prefix, or a one-line error naming the setting `name`."""
    if not _PREFIX.fullmatch(text):
        raise InvalidInput(
            f"{name} must start and end with '/' and hold at least one segment of letters, "
            f"digits and '-._~', such as {CONTENT_PREFIX}, not {text!r}"
        )
    if any(segment in (".", "..") for segment in text.split("/")):
        raise InvalidInput(f"{name} must not have a '.' or '..' segment, not {text!r}")
    first = "/" + text.split("/")[1]
    if first in ROOT_PATHS:
        raise InvalidInput(
            f"{name} must not begin with {first}: the service answers {', '.join(ROOT_PATHS)} "
            "beside the content prefix"
        )
    return text


def check_origin(text: str, name: str) -> str:
    """The content origin without a trailing slash, or a one-line error naming `name`:
    only a scheme, a host and a port (the path is the prefix's business)."""
    check_text(text, name)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- raises ValueError on a port out of range
    except ValueError as exc:
        raise InvalidInput(f"{name} must be {ORIGIN_EXAMPLE}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"{name} must be {ORIGIN_EXAMPLE}, not {text!r}")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput(f"{name} must not carry a user name or password")
    if parts.path not in ("", "/") or "?" in text or "#" in text:
        raise InvalidInput(
            f"{name} must be {ORIGIN_EXAMPLE}, with no path (the path is "
            f"PULP_CONTENT_CONTENT_PATH_PREFIX), not {text!r}"
        )
    return f"{parts.scheme}://{parts.netloc}"


def absolute(origin: str | None, location: str) -> str:
    """A path made absolute on the configured origin; with none, the path as it is (a
    client resolves it against the URL it asked for: RFC 9110 §10.2.2)."""
    return origin + location if origin else location


def distribution_url(origin: str, prefix: str, base_path: str) -> str:
    """The URL a distribution serves at, percent-encoded, with its trailing slash."""
    return origin + url_path(f"{prefix}{base_path}/")
