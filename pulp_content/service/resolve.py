"""Resolve a request path to what the service does with it (database only, no aiohttp).

This is the hot path: a stored artifact takes two queries (the distribution, then one
UNION that finds the file, the generated metadata or the directory at once), a lazy
artifact a third for its remote artifacts.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any
from urllib.parse import parse_qsl, unquote

from django.db import connection

from pulp_content.service import guards
from pulp_content.service.config import CONTENT_PREFIX
from pulp_content.service.models import DIGESTS, Distribution, Remote, RemoteArtifact
from pulp_content.service.paths import MAX_SEGMENTS, BadPath, split_request_path, url_path
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.remoteurl import upstream_url


@dataclass(frozen=True)
class DistributionRef:
    name: str
    base_path: str


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: `storage_path` is relative to the storage root."""

    sha256: str
    size: int
    storage_path: str


@dataclass(frozen=True)
class RemoteRef:
    """One place a lazy artifact can be downloaded from (id None: pull-through, not saved yet)."""

    id: int | None
    config: RemoteConfig
    url: str
    size: int | None
    digests: Mapping[str, str]
    failed_at: dt.datetime | None = None

    @property
    def remote(self) -> str:
        return self.config.name

    @property
    def policy(self) -> str:
        return self.config.policy


@dataclass(frozen=True)
class Entry:
    """A line of a directory listing."""

    name: str
    is_dir: bool
    size: int | None = None
    modified: dt.datetime | None = None


@dataclass(frozen=True)
class Resolved:
    """What every answer carries: where the path led."""

    path: str
    distribution: DistributionRef | None = None
    source: str | None = None
    relative_path: str | None = None


@dataclass(frozen=True)
class LocalArtifact(Resolved):
    artifact: ArtifactRef = field(default_factory=lambda: ArtifactRef("", 0, ""))
    last_modified: dt.datetime | None = None


@dataclass(frozen=True)
class RemoteSource(Resolved):
    """A lazy artifact: not in storage, downloadable from `remote_artifacts` in order."""

    content_artifact_id: int | None = None
    remote_artifacts: tuple[RemoteRef, ...] = ()
    size: int | None = None
    sha256: str | None = None
    last_modified: dt.datetime | None = None

    @property
    def policy(self) -> str:
        return self.remote_artifacts[0].policy if self.remote_artifacts else "streamed"


@dataclass(frozen=True)
class Listing(Resolved):
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Redirect(Resolved):
    location: str = ""


@dataclass(frozen=True)
class NotFound(Resolved):
    reason: str = "not found"


@dataclass(frozen=True)
class Forbidden(Resolved):
    reason: str = "forbidden"
    status: int = 403
    challenge: str | None = None


Resolution = LocalArtifact | RemoteSource | Listing | Redirect | NotFound | Forbidden


def resolve(
    raw_path: str,
    headers: Mapping[str, str] | None = None,
    prefix: str = CONTENT_PREFIX,
) -> Resolution:
    """Resolve a URL path such as `/pulp/content/base/dir/file.iso` (still percent-encoded;
    a query string, if any, is what signed-URL guards read)."""
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
        facts = guards.RequestFacts(decoded, headers or {}, dict(parse_qsl(query_string)))
        refusal = guards.check(dist.guard_kind, dist.guard_settings, facts)
        if refusal is not None:
            return Forbidden(
                decoded, ref, None, None, refusal.reason, refusal.status, refusal.challenge
            )
    relative = "/".join(segments[len(dist.base_path.split("/")) :])
    if not relative and not trailing:
        return Redirect(decoded, ref, location=url_path(f"{prefix}{dist.base_path}/"))
    if dist.remote_id is not None and dist.publication_id is None:
        return _resolve_pull_through(decoded, ref, dist, relative, trailing, query_string)
    return _resolve_in_source(decoded, ref, dist, relative, trailing, prefix)


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
    settings = row[9]
    if isinstance(settings, str):  # SQLite hands JSON back as text
        settings = json.loads(settings)
    name, base_path, publication, repository, version, remote, published, pass_through = row[:8]
    return _Dist(
        name,
        base_path,
        publication,
        repository,
        version,
        remote,
        published,
        bool(pass_through),
        row[8],
        settings or {},
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
    with connection.cursor() as cursor:
        cursor.execute(sql, exact_params + below_params)
        rows = cursor.fetchall()
    for row in rows:
        if row[8] == relative:
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
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    if not rows and relative:
        return NotFound(decoded, ref, source.name, relative, reason="no such directory")
    index = f"{relative}/index.html" if relative else "index.html"
    for row in rows:
        if row[8] == index:
            return _file(decoded, ref, source.name, index, row)
    return Listing(decoded, ref, source.name, relative, entries=_entries(rows, len(low)))


def _entries(rows: list[tuple[Any, ...]], skip: int) -> tuple[Entry, ...]:
    """The immediate children of a directory from the rows of everything below it."""
    files: dict[str, Entry] = {}
    dirs: set[str] = set()
    for row in rows:
        name, _, rest = row[8][skip:].partition("/")
        if rest:
            dirs.add(name)
        elif name not in files:
            size = row[3] if row[3] is not None else row[7]
            files[name] = Entry(name, False, size, _aware(row[5]))
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
    decoded: str, ref: DistributionRef, source: str, relative: str, row: tuple[Any, ...]
) -> Resolution:
    _kind, ca_id, sha256, size, storage_path, added, expected_sha, expected_size, _ = row
    if sha256 is not None:
        return LocalArtifact(
            decoded, ref, source, relative, ArtifactRef(sha256, size, storage_path), _aware(added)
        )
    remotes = tuple(remote_artifacts(ca_id))
    if not remotes:
        return NotFound(
            decoded, ref, source, relative, reason="content is not downloaded and has no remote"
        )
    return RemoteSource(
        decoded, ref, source, relative, ca_id, remotes, expected_size, expected_sha, _aware(added)
    )


# A RemoteConfig is built straight from these columns of the remote table.
_REMOTE_COLUMNS = tuple(f.name for f in fields(RemoteConfig))
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
        if isinstance(remote["headers"], str):  # SQLite hands JSON back as text
            remote["headers"] = json.loads(remote["headers"])
        remote["headers"] = tuple(sorted((remote["headers"] or {}).items()))
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


def action_of(resolution: Resolution, delegate: bool = False) -> str:
    """The `action` name `pulp-content resolve` prints for this resolution."""
    match resolution:
        case LocalArtifact():
            return "delegate" if delegate else "serve_file"
        case RemoteSource():
            return "stream"
        case Listing():
            return "listing"
        case Redirect():
            return "redirect"
        case Forbidden():
            return "forbidden"
        case _:
            return "not_found"


def describe(resolution: Resolution, queries: int, delegate: bool = False) -> dict[str, Any]:
    """The JSON document of `pulp-content resolve --json`."""
    dist = resolution.distribution
    artifact = resolution.artifact if isinstance(resolution, LocalArtifact) else None
    remotes = resolution.remote_artifacts if isinstance(resolution, RemoteSource) else ()
    doc: dict[str, Any] = {
        "path": resolution.path,
        "distribution": {"name": dist.name, "base_path": dist.base_path} if dist else None,
        "source": resolution.source,
        "relative_path": resolution.relative_path,
        "action": action_of(resolution, delegate),
        "artifact": (
            {
                "sha256": artifact.sha256,
                "size": artifact.size,
                "storage_path": artifact.storage_path,
            }
            if artifact
            else None
        ),
        "remote_artifacts": [
            {
                "remote": r.remote,
                "url": r.url,
                "policy": r.policy,
                "size": r.size,
                "sha256": r.digests.get("sha256"),
            }
            for r in remotes
        ],
        "queries": queries,
    }
    match resolution:
        case Redirect(location=loc):
            doc["location"] = loc
        case NotFound(reason=why) | Forbidden(reason=why):
            doc["reason"] = why
        case Listing(entries=entries):
            doc["entries"] = [e.name + ("/" if e.is_dir else "") for e in entries]
    return doc
