"""Resolve a request path to what the service does with it (database only, no aiohttp).

This is the hot path: a stored artifact takes two queries (the distribution, then one
UNION that finds the file, the generated metadata or the directory at once), a lazy
artifact a third for its remote artifacts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from django.db import connection

from pulp_content.service import guards
from pulp_content.service.config import CONTENT_PREFIX
from pulp_content.service.fields import unseal_json, unseal_text
from pulp_content.service.models import Distribution, Remote, RemoteArtifact
from pulp_content.service.paths import MAX_SEGMENTS, BadPath, split_request_path, url_path
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.remoteurl import upstream_url
from pulp_content.service.types import (
    DIGESTS,
    ArtifactRef,
    DistributionRef,
    Entry,
    Listing,
    LocalArtifact,
    NotFound,
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
    right; any other password check comes back as Unverified, before any other query."""
    raw_path, _, query_string = raw_path.partition("?")
    decoded = unquote(raw_path)
    if not decoded.startswith(prefix) and decoded != prefix.rstrip("/"):
        return NotFound(decoded, reason=f"not under {prefix}")
    try:
        segments, trailing = split_request_path(raw_path[len(prefix) :], decoded[len(prefix) :])
    except BadPath as exc:
        return NotFound(decoded, reason=str(exc))
    if not segments and decoded == prefix.rstrip("/"):
        return Redirect(decoded, location=url_path(prefix))
    dist = _match_distribution(segments)
    if dist is None:
        return _list_distributions(decoded, prefix, "/".join(segments), trailing)
    ref = DistributionRef(dist.name, dist.base_path)
    if dist.guard_kind is not None:
        query = dict(parse_qsl(query_string))
        facts = guards.RequestFacts(decoded, headers or {}, query, from_proxy)
        verdict = guards.check(dist.guard_kind, dist.guard_settings, facts)
        if isinstance(verdict, guards.Refusal):
            return refused(decoded, ref, verdict)
        if isinstance(verdict, guards.PasswordCheck) and verdict.cache_key != verified:
            return Unverified(decoded, ref, check=verdict)
    relative = "/".join(segments[len(dist.base_path.split("/")) :])
    if not relative and not trailing:
        return Redirect(decoded, ref, location=url_path(f"{prefix}{dist.base_path}/"))
    if dist.remote_id is not None and dist.publication_id is None:
        return _resolve_pull_through(decoded, ref, dist, relative, trailing, query_string)
    return _resolve_in_source(decoded, ref, dist, relative, trailing, prefix)


def resolve_now(
    raw_path: str,
    headers: Mapping[str, str] | None = None,
    prefix: str = CONTENT_PREFIX,
    from_proxy: bool = False,
) -> Resolution:
    """`resolve`, with a password check hashed right here (`pulp-content resolve`: one
    request, no pool to protect); the service runs the same steps in `handlers`."""
    resolution = resolve(raw_path, headers, prefix, from_proxy)
    if not isinstance(resolution, Unverified) or resolution.check is None:
        return resolution
    if not guards.password_matches(resolution.check):
        return refused(
            resolution.path, resolution.distribution, guards.wrong_password(resolution.check)
        )
    return resolve(raw_path, headers, prefix, from_proxy, verified=resolution.check.cache_key)


@dataclass(frozen=True)
class _Dist:
    """The columns of a distribution (and its publication and guard) resolution needs."""

    name: str
    base_path: str
    publication_id: int | None
    repository_id: int | None
    repository_version_id: int | None
    remote_id: int | None
    published_version_id: int | None
    pass_through: bool
    guard_kind: str | None
    guard_settings: Mapping[str, Any]


_MATCH_DISTRIBUTION = """
    SELECT d.name, d.base_path, d.publication_id, d.repository_id, d.repository_version_id,
           d.remote_id, p.repository_version_id, p.pass_through, g.kind, g.settings
    FROM service_distribution d
    LEFT JOIN service_publication p ON p.id = d.publication_id
    LEFT JOIN service_contentguard g ON g.id = d.content_guard_id
    WHERE d.base_path IN ({placeholders})
    ORDER BY length(d.base_path) DESC
    LIMIT 1"""


def _match_distribution(segments: list[str]) -> _Dist | None:
    """The distribution whose base path is the longest prefix (by segments) of the path.

    Raw SQL: this runs on every request, and building it through the ORM cost three
    times as much as running it.
    """
    if not segments:
        return None
    # A base path has at most MAX_SEGMENTS segments: no longer prefix can match.
    depth = min(len(segments), MAX_SEGMENTS)
    prefixes = ["/".join(segments[: i + 1]) for i in range(depth)]
    sql = _MATCH_DISTRIBUTION.format(placeholders=", ".join(["%s"] * len(prefixes)))
    with connection.cursor() as cursor:
        cursor.execute(sql, prefixes)
        row = cursor.fetchone()
    if row is None:
        return None
    name, base_path, publication, repository, version, remote, published = row[:7]
    pass_through, guard_kind, sealed = row[7:]
    guard_settings = unseal_json(sealed)  # encrypted; decrypted once per token, then cached
    return _Dist(
        name,
        base_path,
        publication,
        repository,
        version,
        remote,
        published,
        bool(pass_through),
        guard_kind,
        guard_settings or {},
    )


def _list_distributions(decoded: str, prefix: str, partial: str, trailing: bool) -> Resolution:
    """`/pulp/content/` and partial base paths list the distributions below them."""
    below = Distribution.objects.filter(content_guard__isnull=True)
    if partial:
        below = below.filter(base_path__startswith=partial + "/")
    names = sorted(
        {
            bp[len(partial) :].lstrip("/").split("/")[0]
            for bp in below.values_list("base_path", flat=True)
        }
    )
    if not names and partial:
        return NotFound(decoded, reason="no distribution at this base path")
    if not trailing:
        return Redirect(decoded, location=url_path(f"{prefix}{partial}/"))
    return Listing(decoded, entries=tuple(Entry(name, True) for name in names))


@dataclass(frozen=True)
class _Source:
    """Where a distribution's files come from: tables and their filters."""

    name: str
    publication_id: int | None
    published_artifacts: bool
    version_sql: str
    version_params: tuple[Any, ...]


def _source_of(dist: _Dist) -> _Source:
    version_table = "service_repositoryversion"
    if dist.publication_id is not None:
        return _Source(
            "publication",
            dist.publication_id,
            not dist.pass_through,
            "%s",
            (dist.published_version_id,),
        )
    if dist.repository_version_id is not None:
        return _Source("repository_version", None, False, "%s", (dist.repository_version_id,))
    latest = (
        f"(SELECT id FROM {version_table} WHERE repository_id = %s ORDER BY number DESC LIMIT 1)"
    )
    return _Source("repository_version", None, False, latest, (dist.repository_id,))


class _FileRow(NamedTuple):
    """A row of the file queries below, in their column order."""

    kind: str  # 'file' or 'meta'
    content_artifact_id: int | None
    sha256: str | None  # the stored artifact's; None while not downloaded
    size: int | None
    storage_path: str | None
    added: Any
    expected_sha256: str
    expected_size: int | None
    relative_path: str


def _file_rows(sql: str, params: list[Any]) -> list[_FileRow]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_FileRow._make(row) for row in cursor.fetchall()]


_ARTIFACT_COLUMNS = "a.sha256, a.size, a.file"
_FILE_FROM_PUBLICATION = f"""
    SELECT 'file', ca.id, {_ARTIFACT_COLUMNS}, pa.added, c.sha256, c.size, pa.relative_path
    FROM service_publishedartifact pa
    JOIN service_contentartifact ca ON ca.id = pa.content_artifact_id
    JOIN service_content c ON c.id = ca.content_id
    LEFT JOIN service_artifact a ON a.id = ca.artifact_id
    WHERE pa.publication_id = %s AND {{where}}"""
_FILE_FROM_VERSION = f"""
    SELECT 'file', ca.id, {_ARTIFACT_COLUMNS}, m.added, c.sha256, c.size, m.relative_path
    FROM service_repositoryversioncontent m
    JOIN service_contentartifact ca ON ca.id = m.content_artifact_id
    JOIN service_content c ON c.id = ca.content_id
    LEFT JOIN service_artifact a ON a.id = ca.artifact_id
    WHERE m.version_id = {{version}} AND {{where}}"""
_METADATA = f"""
    SELECT 'meta', NULL, {_ARTIFACT_COLUMNS}, p.created, a.sha256, a.size, pm.relative_path
    FROM service_publishedmetadata pm
    JOIN service_artifact a ON a.id = pm.artifact_id
    JOIN service_publication p ON p.id = pm.publication_id
    WHERE pm.publication_id = %s AND {{where}}"""


def _branches(source: _Source, where: str, params: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """One UNION ALL over the tables that hold this source's files."""
    parts: list[str] = []
    values: list[Any] = []
    if source.published_artifacts:
        parts.append(_FILE_FROM_PUBLICATION.format(where=where.format(t="pa")))
        values += [source.publication_id, *params]
    else:
        parts.append(
            _FILE_FROM_VERSION.format(version=source.version_sql, where=where.format(t="m"))
        )
        values += [*source.version_params, *params]
    if source.publication_id is not None:
        parts.append(_METADATA.format(where=where.format(t="pm")))
        values += [source.publication_id, *params]
    return " UNION ALL ".join(parts), values


def _children_bounds(relative: str) -> tuple[str, str]:
    """Every path below directory `relative` sorts between these (byte order; the
    PostgreSQL columns use the C collation for this, see migration 0002)."""
    return (relative + "/", relative + "0") if relative else ("", "\U0010ffff")


def _resolve_in_source(
    decoded: str, ref: DistributionRef, dist: _Dist, relative: str, trailing: bool, prefix: str
) -> Resolution:
    source = _source_of(dist)
    if trailing:
        return _listing_or_index(decoded, ref, source, relative)
    low, high = _children_bounds(relative)
    exact, exact_params = _branches(source, "{t}.relative_path = %s", (relative,))
    below, below_params = _branches(
        source, "{t}.relative_path > %s AND {t}.relative_path < %s", (low, high)
    )
    # Exact matches first; one row of anything below tells a directory apart from a 404.
    sql = f"SELECT * FROM ({exact}) e UNION ALL SELECT * FROM ({below} LIMIT 1) d"
    rows = _file_rows(sql, exact_params + below_params)
    for row in rows:
        if row.relative_path == relative:
            return _file(decoded, ref, source.name, relative, row)
    if rows:
        # A directory: its path, normalised and encoded ('?' and '#' are name characters).
        location = url_path(f"{prefix}{ref.base_path}/{relative}/")
        return Redirect(decoded, ref, source.name, relative, location=location)
    return NotFound(decoded, ref, source.name, relative, reason="no content at this path")


def _listing_or_index(
    decoded: str, ref: DistributionRef, source: _Source, relative: str
) -> Resolution:
    low, high = _children_bounds(relative)
    sql, params = _branches(
        source, "{t}.relative_path > %s AND {t}.relative_path < %s", (low, high)
    )
    rows = _file_rows(sql, params)
    if not rows and relative:
        return NotFound(decoded, ref, source.name, relative, reason="no such directory")
    index = f"{relative}/index.html" if relative else "index.html"
    for row in rows:
        if row.relative_path == index:
            return _file(decoded, ref, source.name, index, row)
    return Listing(decoded, ref, source.name, relative, entries=_entries(rows, len(low)))


def _entries(rows: list[_FileRow], skip: int) -> tuple[Entry, ...]:
    """The immediate children of a directory from the rows of everything below it."""
    files: dict[str, Entry] = {}
    dirs: set[str] = set()
    for row in rows:
        name, _, rest = row.relative_path[skip:].partition("/")
        if rest:
            dirs.add(name)
        elif name not in files:
            size = row.size if row.size is not None else row.expected_size
            files[name] = Entry(name, False, size, _aware(row.added))
    entries = [Entry(name, True) for name in sorted(dirs)]
    entries += [files[name] for name in sorted(files)]
    return tuple(entries)


def _aware(value: Any) -> dt.datetime | None:
    """Raw SQL hands SQLite timestamps back as text; the ORM would have parsed them."""
    if value is None or isinstance(value, dt.datetime):
        return value.replace(tzinfo=value.tzinfo or dt.UTC) if value else None
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


def _file(
    decoded: str, ref: DistributionRef, source: str, relative: str, row: _FileRow
) -> Resolution:
    added = _aware(row.added)
    if row.sha256 is not None:
        assert row.size is not None and row.storage_path is not None
        stored = ArtifactRef(row.sha256, row.size, row.storage_path)
        return LocalArtifact(decoded, ref, source, relative, stored, added)
    assert row.content_artifact_id is not None  # metadata rows are always stored
    remotes = tuple(remote_artifacts(row.content_artifact_id))
    if not remotes:
        return NotFound(
            decoded, ref, source, relative, reason="content is not downloaded and has no remote"
        )
    return RemoteSource(
        decoded,
        ref,
        source,
        relative,
        row.content_artifact_id,
        remotes,
        row.expected_size,
        row.expected_sha256,
        added,
    )


# A RemoteConfig is built straight from these columns of the remote table.
_REMOTE_COLUMNS = tuple(f.name for f in fields(RemoteConfig))
_SEALED_REMOTE_COLUMNS = ("password", "proxy_password", "client_key")
_REMOTE_ARTIFACTS = f"""
    SELECT ra.id, ra.url, ra.size, ra.failed_at, {", ".join(f"ra.{d}" for d in DIGESTS)},
           {", ".join(f"r.{c}" for c in _REMOTE_COLUMNS)}
    FROM service_remoteartifact ra
    JOIN service_remote r ON r.id = ra.remote_id
    WHERE ra.content_artifact_id = %s
    ORDER BY (CASE WHEN ra.failed_at IS NULL THEN 0 ELSE 1 END), ra.failed_at, ra.id"""


def remote_artifacts(content_artifact_id: int) -> list[RemoteRef]:
    """Where a content artifact can be downloaded from: never-failed first, then the
    longest-ago failed. (Raw SQL: the ORM took longer to build the rows than the
    database took to find them.)"""
    with connection.cursor() as cursor:
        cursor.execute(_REMOTE_ARTIFACTS, [content_artifact_id])
        rows = cursor.fetchall()
    refs = []
    for row in rows:
        ra_id, url, size, failed_at = row[:4]
        digests = {name: value for name, value in zip(DIGESTS, row[4:10], strict=True) if value}
        remote = dict(zip(_REMOTE_COLUMNS, row[10:], strict=True))
        # Encrypted columns: decrypted once per token, then a dictionary lookup.
        for name in _SEALED_REMOTE_COLUMNS:
            remote[name] = unseal_text(remote[name])
        remote["headers"] = tuple(sorted((unseal_json(remote["headers"]) or {}).items()))
        remote["tls_validation"] = bool(remote["tls_validation"])
        remote["forward_query"] = bool(remote["forward_query"])
        remote["updated"] = _aware(remote["updated"])
        refs.append(RemoteRef(ra_id, RemoteConfig(**remote), url, size, digests, _aware(failed_at)))
    return refs


def _remote_ref(ra: RemoteArtifact) -> RemoteRef:
    digests = {name: getattr(ra, name) for name in DIGESTS if getattr(ra, name)}
    return RemoteRef(
        ra.pk, RemoteConfig.from_model(ra.remote), ra.url, ra.size, digests, ra.failed_at
    )


def _resolve_pull_through(
    decoded: str, ref: DistributionRef, dist: _Dist, relative: str, trailing: bool, query: str
) -> Resolution:
    """A pull-through distribution serves whatever its remote has beside its URL, and keeps
    (on_demand, immediate) what it fetched so the next request comes from storage."""
    if trailing:
        return NotFound(
            decoded,
            ref,
            "pull_through",
            relative,
            reason="a pull-through distribution has no listing",
        )
    assert dist.remote_id is not None
    remote = Remote.objects.get(pk=dist.remote_id)
    try:
        url = upstream_url(remote.url, relative, query if remote.forward_query else "")
    except BadPath as exc:
        return NotFound(decoded, ref, "pull_through", relative, reason=str(exc))
    known = (
        RemoteArtifact.objects.filter(remote=remote, url=url)
        .select_related("content_artifact__artifact", "remote")
        .first()
    )
    if known is not None and known.content_artifact.artifact is not None:
        art = known.content_artifact.artifact
        return LocalArtifact(
            decoded,
            ref,
            "pull_through",
            relative,
            ArtifactRef(art.sha256, art.size, art.file),
            art.created,
        )
    remote_ref = (
        _remote_ref(known)
        if known is not None
        else RemoteRef(None, RemoteConfig.from_model(remote), url, None, {})
    )
    return RemoteSource(
        decoded,
        ref,
        "pull_through",
        relative,
        known.content_artifact_id if known else None,
        (remote_ref,),
        remote_ref.size,
        remote_ref.digests.get("sha256"),
    )
