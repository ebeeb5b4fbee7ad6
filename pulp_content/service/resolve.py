"""Resolve a request path to what the service does with it (no aiohttp).

The dispatcher: from the rows `lookup` reads, decide whether a path is a file of a
publication or a repository version, a pull-through fetch, a listing or a redirect
(`locate`, what the service caches), then whether its guard lets the request in
(`guards.admit`, on every request). On a cache miss this is the hot path: a stored
artifact takes two statements (the distribution, then one UNION that finds the file, the
generated metadata or the directory at once), a lazy artifact a third for its remote
artifacts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from urllib.parse import unquote

from pulp_content.service import guards
from pulp_content.service.config import CONTENT_PREFIX
from pulp_content.service.freshness import DEFAULT_MAX_STALE, http_date, max_age_of
from pulp_content.service.lookup import (
    DistributionRow,
    FileRow,
    KnownUrl,
    Source,
    distribution_at,
    file_or_below,
    files_below,
    known_url,
    open_base_paths,
    remote_artifacts,
    remote_config,
)
from pulp_content.service.paths import MAX_SEGMENTS, BadPath, split_request_path, url_path
from pulp_content.service.remoteurl import directory_url, upstream_url
from pulp_content.service.types import (
    NOT_DOWNLOADED,
    ArtifactRef,
    DistributionRef,
    Entry,
    GuardRef,
    Listing,
    LocalArtifact,
    Located,
    NotFound,
    Pulled,
    Redirect,
    RemoteRef,
    RemoteSource,
    Resolution,
    Unverified,
    refused,
)


def resolve(
    raw_path: str,
    headers: Mapping[str, str] | None = None,
    prefix: str = CONTENT_PREFIX,
    from_proxy: bool = False,
    verified: str | None = None,
) -> Resolution:
    """Resolve a URL path such as `/pulp/content/base/dir/file.iso` (still percent-encoded;
    a query string, if any, is what signed-URL guards read).

    `from_proxy`: the peer is a trusted proxy, whose headers (a client certificate) guards
    may believe. `verified`: the cache key of the PasswordCheck the caller has run and found
    right; any other password check comes back as Unverified. The service runs the same
    two steps, `locate` through its cache (`service.cache`), then `guards.admit`."""
    path, _, query_string = raw_path.partition("?")
    located = locate(path, prefix, query_string)
    return guards.admit(located, query_string, headers or {}, from_proxy, verified)


def locate(raw_path: str, prefix: str = CONTENT_PREFIX, query_string: str = "") -> Located:
    """What a percent-encoded path leads to before any guard: the part of `resolve` that
    depends on the path and the database only, which the service caches. The query
    string matters only to a pull-through remote that forwards it (then the answer is
    not cacheable)."""
    decoded = unquote(raw_path)
    if not decoded.startswith(prefix) and decoded != prefix.rstrip("/"):
        return Located(NotFound(decoded, reason=f"not under {prefix}"))
    try:
        segments, trailing = split_request_path(raw_path[len(prefix) :], decoded[len(prefix) :])
    except BadPath as exc:
        return Located(NotFound(decoded, reason=str(exc)))
    if not segments and decoded == prefix.rstrip("/"):
        return Located(Redirect(decoded, location=url_path(prefix)))
    dist = _match_distribution(segments)
    if dist is None:
        return Located(_list_distributions(decoded, prefix, "/".join(segments), trailing))
    guard = GuardRef(dist.guard_kind, dist.guard_settings) if dist.guard_kind else None
    ref = DistributionRef(dist.name, dist.base_path)
    relative = "/".join(segments[len(dist.base_path.split("/")) :])
    if not relative and not trailing:
        location = url_path(f"{prefix}{dist.base_path}/")
        return Located(Redirect(decoded, ref, location=location), guard)
    if dist.remote_id is not None and dist.publication_id is None:
        return _resolve_pull_through(decoded, ref, dist, relative, trailing, query_string, guard)
    return Located(_resolve_in_source(decoded, ref, dist, relative, trailing, prefix), guard)


def resolve_now(
    raw_path: str,
    headers: Mapping[str, str] | None = None,
    prefix: str = CONTENT_PREFIX,
    from_proxy: bool = False,
) -> Resolution:
    """`resolve`, with a password check hashed right here (`pulp-content resolve`: one
    request, no pool to protect); the service runs the same steps in `handlers`."""
    path, _, query_string = raw_path.partition("?")
    located = locate(path, prefix, query_string)
    resolution = guards.admit(located, query_string, headers or {}, from_proxy)
    if not isinstance(resolution, Unverified) or resolution.check is None:
        return resolution
    if not guards.password_matches(resolution.check):
        return refused(
            resolution.path, resolution.distribution, guards.wrong_password(resolution.check)
        )
    verified = resolution.check.cache_key
    return guards.admit(located, query_string, headers or {}, from_proxy, verified)


def _match_distribution(segments: list[str]) -> DistributionRow | None:
    """The distribution whose base path is the longest prefix (by segments) of the path."""
    if not segments:
        return None
    # A base path has at most MAX_SEGMENTS segments: no longer prefix can match.
    depth = min(len(segments), MAX_SEGMENTS)
    return distribution_at(["/".join(segments[: i + 1]) for i in range(depth)])


def _list_distributions(decoded: str, prefix: str, partial: str, trailing: bool) -> Resolution:
    """`/pulp/content/` and partial base paths list the distributions below them."""
    names = sorted(
        {bp[len(partial) :].lstrip("/").split("/")[0] for bp in open_base_paths(partial)}
    )
    if not names and partial:
        return NotFound(decoded, reason="no distribution at this base path")
    if not trailing:
        return Redirect(decoded, location=url_path(f"{prefix}{partial}/"))
    return Listing(decoded, entries=tuple(Entry(name, True) for name in names))


def _source_of(dist: DistributionRow) -> Source:
    """A publication serves its own list of files (a pass-through one its version's);
    else a fixed repository version, else the repository's latest."""
    if dist.publication_id is not None:
        return Source(
            "publication",
            dist.publication_id,
            published_artifacts=not dist.pass_through,
            version_id=dist.published_version_id,
        )
    if dist.repository_version_id is not None:
        return Source("repository_version", version_id=dist.repository_version_id)
    return Source("repository_version", latest_of=dist.repository_id)


def _resolve_in_source(
    decoded: str,
    ref: DistributionRef,
    dist: DistributionRow,
    relative: str,
    trailing: bool,
    prefix: str,
) -> Resolution:
    source = _source_of(dist)
    if trailing:
        return _listing_or_index(decoded, ref, source, relative)
    # Exact matches first; one row of anything below tells a directory apart from a 404.
    rows = file_or_below(source, relative)
    for row in rows:
        if row.relative_path == relative:
            return _file(decoded, ref, source.name, relative, row)
    if rows:
        # A directory: its path, normalised and encoded ('?' and '#' are name characters).
        location = url_path(f"{prefix}{ref.base_path}/{relative}/")
        return Redirect(decoded, ref, source.name, relative, location=location)
    return NotFound(decoded, ref, source.name, relative, reason="no content at this path")


def _listing_or_index(
    decoded: str, ref: DistributionRef, source: Source, relative: str
) -> Resolution:
    rows = files_below(source, relative)
    if not rows and relative:
        return NotFound(decoded, ref, source.name, relative, reason="no such directory")
    index = f"{relative}/index.html" if relative else "index.html"
    for row in rows:
        if row.relative_path == index:
            return _file(decoded, ref, source.name, index, row)
    return Listing(decoded, ref, source.name, relative, entries=_entries(rows, relative))


def _entries(rows: list[FileRow], directory: str) -> tuple[Entry, ...]:
    """The immediate children of `directory` from the rows of everything below it."""
    skip = len(directory) + 1 if directory else 0
    files: dict[str, Entry] = {}
    dirs: set[str] = set()
    for row in rows:
        name, _, rest = row.relative_path[skip:].partition("/")
        if rest:
            dirs.add(name)
        elif name not in files:
            size = row.size if row.size is not None else row.expected_size
            files[name] = Entry(name, False, size, row.added)
    entries = [Entry(name, True) for name in sorted(dirs)]
    entries += [files[name] for name in sorted(files)]
    return tuple(entries)


def _file(
    decoded: str, ref: DistributionRef, source: str, relative: str, row: FileRow
) -> Resolution:
    if row.sha256 is not None:
        assert row.size is not None and row.storage_path is not None
        stored = ArtifactRef(row.sha256, row.size, row.storage_path)
        return LocalArtifact(decoded, ref, source, relative, stored, row.added)
    assert row.content_artifact_id is not None  # metadata rows are always stored
    remotes = tuple(remote_artifacts(row.content_artifact_id))
    if not remotes:
        return NotFound(decoded, ref, source, relative, reason=NOT_DOWNLOADED)
    return RemoteSource(
        decoded,
        ref,
        source,
        relative,
        row.content_artifact_id,
        remotes,
        row.expected_size,
        row.expected_sha256,
        row.added,
    )


def pulled_copy(
    decoded: str, ref: DistributionRef | None, relative: str, known: KnownUrl
) -> LocalArtifact:
    """A stored pull-through copy, with what deciding its freshness needs."""
    assert known.stored is not None
    remote = known.remote_artifact.config
    max_age = max_age_of(relative, remote.mutable, remote.metadata_max_age, known.upstream.max_age)
    pulled = Pulled(
        known.remote_artifact,
        known.content_artifact_id,
        known.validated_at or known.created or dt.datetime.now(dt.UTC),
        max_age,
        DEFAULT_MAX_STALE if remote.max_stale is None else remote.max_stale,
        known.upstream.etag,
        known.upstream.last_modified,
    )
    # A mutable copy's Last-Modified is the upstream's own, or none: the time it was
    # fetched would not do, as new bytes fetched within the same second as the old ones
    # would look unmodified to a client's If-Modified-Since (its ETag, the sha256, is
    # exact). An immutable copy never changes: when it was fetched will do.
    upstream_modified = http_date(known.upstream.last_modified)
    modified = known.created if max_age is None else upstream_modified
    return LocalArtifact(decoded, ref, "pull_through", relative, known.stored, modified, pulled)


def repulled(hit: LocalArtifact) -> LocalArtifact | None:
    """The pull-through copy `hit` named, as the database has it now (another worker may
    have revalidated or replaced it); None: no copy is stored any more."""
    assert hit.pulled is not None
    ra = hit.pulled.remote_artifact
    known = known_url(ra.config.id, ra.url)
    if known is None or known.stored is None:
        return None
    return pulled_copy(hit.path, hit.distribution, hit.relative_path or "", known)


def _resolve_pull_through(
    decoded: str,
    ref: DistributionRef,
    dist: DistributionRow,
    relative: str,
    trailing: bool,
    query: str,
    guard: GuardRef | None,
) -> Located:
    """A pull-through distribution serves whatever its remote has beside its URL, and keeps
    (on_demand, immediate) what it fetched so the next request comes from storage. A
    directory (`simple/pkg/`, a PyPI simple page) is the upstream's page for it, kept as
    a file whose path ends in '/'; the top has no listing."""
    if trailing and not relative:
        no_listing = "a pull-through distribution has no listing"
        return Located(NotFound(decoded, ref, "pull_through", relative, reason=no_listing), guard)
    assert dist.remote_id is not None
    remote = remote_config(dist.remote_id)
    # What the query string changes (the upstream URL) is not kept by path alone.
    cacheable = not remote.forward_query
    forwarded = query if remote.forward_query else ""
    try:
        url = upstream_url(remote.url, relative, "" if trailing else forwarded)
    except BadPath as exc:
        gone = NotFound(decoded, ref, "pull_through", relative, reason=str(exc))
        return Located(gone, guard, cacheable)
    if trailing:
        url, relative = directory_url(url, forwarded), relative + "/"
    known = known_url(remote.id, url)
    if known is not None and known.stored is not None:
        stored = pulled_copy(decoded, ref, relative, known)
        return Located(stored, guard, cacheable)
    remote_ref = (
        known.remote_artifact if known is not None else RemoteRef(None, remote, url, None, {})
    )
    source = RemoteSource(
        decoded,
        ref,
        "pull_through",
        relative,
        known.content_artifact_id if known else None,
        (remote_ref,),
        remote_ref.size,
        remote_ref.digests.get("sha256"),
    )
    return Located(source, guard, cacheable)
