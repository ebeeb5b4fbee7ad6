"""Which pull-through files change at the same URL, and for how long a copy of one is
fresh (no Django, no aiohttp: a test imports this with no settings).

A pull-through remote keeps what it fetched. That is right for a package, a wheel or a
blob named by its digest, and wrong for the files an upstream rewrites in place: a
Debian `InRelease`, `Release` or `Packages`, a PyPI simple page, a `repomd.xml`. Those
are *mutable*: matched by glob patterns (built-in ones, plus the remote's own), they
are revalidated upstream once older than a max age (the remote's
`metadata_max_age`, or the upstream's own `Cache-Control`/`Expires` where tighter).
Everything else is immutable and never revalidated.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase

# Globs matched against the path relative to the remote's URL directory: `*` matches
# across `/`; a pattern with no `/` matches the file name at any depth; a leading `*/`
# or `**/` means "at any depth, the top included".
DEFAULT_MUTABLE = (
    "dists/**",  # Debian: everything under dists/ (Release, Packages, Contents, i18n)
    "*/InRelease",
    "*Release*",  # Release, InRelease, Release.gpg of flat repositories too
    "*/Packages*",
    "*/Sources*",
    "repodata/repomd.xml",  # RPM: the one file that names the others by digest
    "simple/**",  # PyPI (PEP 503 / 691) index pages
    "*.json",  # JSON index files (PEP 691, npm-like metadata, container tag lists)
    "index.html",  # directory indexes
    "PULP_MANIFEST",  # the file type's own index
)
DEFAULT_METADATA_MAX_AGE = 300  # seconds
DEFAULT_MAX_STALE = 86_400  # seconds a mutable copy is served while the upstream is down


def parse_patterns(text: str | None) -> tuple[str, ...]:
    """A remote's own patterns, as the database keeps them (one a line)."""
    return tuple(line for line in (text or "").splitlines() if line.strip())


def format_patterns(patterns: Iterable[str]) -> str | None:
    """A remote's own patterns for the database (None: none of its own)."""
    kept = [p.strip() for p in patterns if p.strip()]
    return "\n".join(kept) if kept else None


def _matches(path: str, pattern: str) -> bool:
    pattern = pattern.removeprefix("**/").removeprefix("*/")
    if "/" not in pattern:
        return fnmatchcase(path.rsplit("/", 1)[-1], pattern)
    # Anchored at the remote's directory, or at any directory below it.
    tails = [path] + [path[i + 1 :] for i, c in enumerate(path) if c == "/"]
    return any(fnmatchcase(tail, pattern) for tail in tails)


def is_mutable(relative_path: str, own: Iterable[str] = ()) -> bool:
    """Whether the file at `relative_path` (below the remote's URL) may change upstream."""
    return _is_mutable(relative_path, tuple(own))


@functools.lru_cache(maxsize=16384)
def _is_mutable(relative_path: str, own: tuple[str, ...]) -> bool:
    """Kept per path: every answer with a body asks (its Cache-Control), and matching a
    path's every tail against each pattern showed in a warm request's profile (py-spy)."""
    return any(_matches(relative_path, p) for p in (*DEFAULT_MUTABLE, *own))


@dataclass(frozen=True)
class UpstreamState:
    """What an upstream said about a file it sent: validators for a conditional request,
    and its own freshness lifetime (seconds; None: it said nothing)."""

    etag: str | None = None
    last_modified: str | None = None
    max_age: int | None = None


def upstream_state(headers: Mapping[str, str]) -> UpstreamState:
    """The validators and lifetime of an upstream answer (RFC 9111 §4.2.1 for a shared
    cache: s-maxage, then max-age, then Expires - Date; no-cache and no-store: 0)."""
    etag = headers.get("ETag") or None
    return UpstreamState(etag, headers.get("Last-Modified") or None, _lifetime(headers))


def _lifetime(headers: Mapping[str, str]) -> int | None:
    directives = _directives(headers.get("Cache-Control", ""))
    if "no-store" in directives or "no-cache" in directives:
        return 0
    for name in ("s-maxage", "max-age"):
        seconds = _seconds(directives.get(name))
        if seconds is not None:
            return seconds
    return _expires(headers)


def _directives(value: str) -> dict[str, str]:
    found: dict[str, str] = {}
    for part in value.split(","):
        name, _, argument = part.strip().partition("=")
        if name:
            found[name.lower()] = argument.strip().strip('"')
    return found


def _seconds(text: str | None) -> int | None:
    if text is None or not text.isdigit():
        return None
    return int(text)


def _expires(headers: Mapping[str, str]) -> int | None:
    expires, date = headers.get("Expires"), headers.get("Date")
    if not expires:
        return None
    try:
        end = parsedate_to_datetime(expires)
        start = parsedate_to_datetime(date) if date else dt.datetime.now(dt.UTC)
    except (TypeError, ValueError):
        return 0  # RFC 9111 §5.3: an invalid Expires means "already expired"
    if end.tzinfo is None or start.tzinfo is None:
        return 0
    return max(0, int((end - start).total_seconds()))


def sibling_scope(url: str) -> str:
    """The URL prefix whose mutable files change together with the file at `url`: a
    Debian suite (`.../dists/<suite>/`, its Release names every Packages below it by
    digest), else the file's directory (a flat repository, `repodata/`)."""
    head, found, tail = url.partition("/dists/")
    if found and "/" in tail:
        return f"{head}/dists/{tail.split('/', 1)[0]}/"
    return url.rsplit("/", 1)[0] + "/"


def http_date(text: str | None) -> dt.datetime | None:
    """An HTTP-date (RFC 9110 §5.6.7) as an aware datetime; None when absent or invalid."""
    if not text:
        return None
    try:
        parsed = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None


def max_age_of(
    relative_path: str,
    own_patterns: Iterable[str],
    metadata_max_age: int | None,
    upstream_max_age: int | None,
) -> int | None:
    """Seconds a pull-through copy stays fresh; None: immutable, never revalidated."""
    if not is_mutable(relative_path, own_patterns):
        return None
    ours = DEFAULT_METADATA_MAX_AGE if metadata_max_age is None else metadata_max_age
    return ours if upstream_max_age is None else min(ours, upstream_max_age)


def age_of(validated_at: dt.datetime, now: dt.datetime) -> float:
    """Seconds since the copy was fetched or last confirmed upstream (never negative)."""
    return max(0.0, (now - validated_at).total_seconds())
