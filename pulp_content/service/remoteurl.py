"""URLs beside a remote's URL: where a synced file or a pull-through request leads
upstream, checked to stay under the remote's URL before anything is asked of it.

No ORM and no aiohttp server here; URLs are parsed with yarl, as the aiohttp client that
fetches them parses them.
"""

from __future__ import annotations

from urllib.parse import unquote

from yarl import URL

from pulp_content.service.paths import ENCODED_HOSTILE, BadPath, clean_segments, url_path


class OutsideRemote(BadPath):
    """A pull-through path that would leave its remote's URL."""


def remote_base(remote_url: str) -> URL:
    """The directory of a remote's URL (up to its last '/'): what lies beside it."""
    url = URL(remote_url)
    directory = url.raw_path.rpartition("/")[0] + "/"
    return url.with_path(directory, encoded=True)


def beside(remote_url: str, relative: str) -> str:
    """The URL of the file at `relative` (a name, not yet encoded) beside the remote's
    URL: each segment percent-encoded, so a '?', '#' or '%' stays in the name."""
    return str(URL(str(remote_base(remote_url)) + url_path(relative)))


def stays_under(url: URL, base: URL) -> bool:
    """Whether `url` is `base` or below it: same origin and credentials, path prefix."""
    origin = (url.scheme, url.host, url.port, url.user, url.password)
    return origin == (base.scheme, base.host, base.port, base.user, base.password) and (
        url.raw_path.startswith(base.raw_path)
    )


def encodes_traversal(text: str) -> bool:
    """Whether decoding `text` again, any number of times, meets an encoded '.', '/',
    '\\' or NUL (`%2e%2e`, `%252e%252e`, ...)."""
    while not ENCODED_HOSTILE.search(text):
        decoded = unquote(text)
        if decoded == text:
            return False
        text = decoded  # shorter each time: this ends
    return True


def upstream_url(remote_url: str, relative: str, query: str = "") -> str:
    """The upstream URL of a pull-through request for `relative` (decoded once).

    Encoded again segment by segment, the upstream decodes exactly what the client sent.
    A name that still encodes a '.', '/', '\\' or NUL after the one decoding (`%252e%252e`
    arrives as `%2e%2e`) is refused: an upstream or a proxy that decodes again would
    find '..' in it. `query`, when given, goes along as sent (the remote's forward_query).
    """
    if encodes_traversal(relative):
        raise OutsideRemote("path still encodes a '.', '/', '\\' or NUL after decoding")
    clean_segments(relative)
    base = remote_base(remote_url)
    # Parsed as the client will parse it (yarl removes dot segments and decodes
    # unreserved characters), so the check sees the URL that will be requested.
    url = URL(beside(remote_url, relative) + (f"?{query}" if query else ""))
    if not stays_under(url, base) or url.raw_path == base.raw_path:
        raise OutsideRemote(f"path leads outside the remote's URL {base.path}")
    return str(url)


def directory_url(url: str, query: str = "") -> str:
    """The URL of the directory page at `url` (an `upstream_url`, checked already): the
    same path with its trailing '/', and the forwarded query, if any."""
    return str(URL(url + "/" + (f"?{query}" if query else "")))
