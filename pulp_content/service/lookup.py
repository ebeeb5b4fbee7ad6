"""The reads resolution makes, each row decoded once into a named value.

Raw SQL on the hot path: a distribution, a source's files, a lazy file's remote
artifacts, with encrypted columns decrypted here. The ORM for what is rarer: a
pull-through distribution's remote and what it has met at a URL, the base paths a
listing shows. Nothing here decides what a path resolves to; `resolve` does, from these
rows. Positional columns are read only in the one function that decodes a row.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

from django.db import connection

from pulp_content.service.fields import unseal_json, unseal_text
from pulp_content.service.freshness import UpstreamState, parse_patterns
from pulp_content.service.models import Distribution, Remote, RemoteArtifact
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import DIGESTS, ArtifactRef, RemoteRef


@dataclass(frozen=True)
class DistributionRow:
    """The columns of a distribution (and its publication and guard) resolution needs."""

    name: str
    base_path: str
    publication_id: int | None
    repository_id: int | None
    repository_version_id: int | None
    remote_id: int | None
    published_version_id: int | None  # the publication's repository version
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


def distribution_at(base_paths: Sequence[str]) -> DistributionRow | None:
    """The distribution with the longest of these base paths, if any has one.

    Raw SQL: this runs on every request, and building it through the ORM cost three
    times as much as running it.
    """
    sql = _MATCH_DISTRIBUTION.format(placeholders=", ".join(["%s"] * len(base_paths)))
    with connection.cursor() as cursor:
        cursor.execute(sql, list(base_paths))
        row = cursor.fetchone()
    return None if row is None else _distribution_row(row)


def _distribution_row(row: Sequence[Any]) -> DistributionRow:
    """A row of _MATCH_DISTRIBUTION, its guard's settings decrypted."""
    name, base_path, publication, repository, version, remote, published, *rest = row
    pass_through, guard_kind, sealed = rest
    guard_settings = unseal_json(sealed)  # encrypted; decrypted once per token, then cached
    return DistributionRow(
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


def open_base_paths(below: str) -> list[str]:
    """The base paths of the unguarded distributions under `below` (all, when empty)."""
    unguarded = Distribution.objects.filter(content_guard__isnull=True)
    if below:
        unguarded = unguarded.filter(base_path__startswith=below + "/")
    return list(unguarded.values_list("base_path", flat=True))


@dataclass(frozen=True)
class Source:
    """Where a distribution's files come from: a publication's own list of files
    (`published_artifacts`), else a repository version (`version_id`, or the latest of
    `latest_of`); a publication's generated metadata too."""

    name: str  # 'publication' or 'repository_version'
    publication_id: int | None = None
    published_artifacts: bool = False
    version_id: int | None = None
    latest_of: int | None = None  # a repository id


class FileRow(NamedTuple):
    """A file (or generated metadata) of a source, at `relative_path`."""

    kind: str  # 'file' or 'meta'
    content_artifact_id: int | None  # None for metadata, which is always stored
    sha256: str | None  # the stored artifact's; None while not downloaded
    size: int | None
    storage_path: str | None
    added: dt.datetime | None
    expected_sha256: str
    expected_size: int | None
    relative_path: str


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
_LATEST_VERSION = (
    "(SELECT id FROM service_repositoryversion WHERE repository_id = %s"
    " ORDER BY number DESC LIMIT 1)"
)
_EXACT = "{t}.relative_path = %s"
_BETWEEN = "{t}.relative_path > %s AND {t}.relative_path < %s"


def file_or_below(source: Source, relative: str) -> list[FileRow]:
    """The rows at `relative`, then at most one row below it (which tells a directory
    apart from a 404): one statement."""
    exact, exact_params = _branches(source, _EXACT, (relative,))
    below, below_params = _branches(source, _BETWEEN, _children_bounds(relative))
    sql = f"SELECT * FROM ({exact}) e UNION ALL SELECT * FROM ({below} LIMIT 1) d"
    return _file_rows(sql, exact_params + below_params)


def files_below(source: Source, directory: str) -> list[FileRow]:
    """Every row below `directory` ('' for the top), at any depth: one statement."""
    sql, params = _branches(source, _BETWEEN, _children_bounds(directory))
    return _file_rows(sql, params)


def _branches(source: Source, where: str, params: tuple[Any, ...]) -> tuple[str, list[Any]]:
    """One UNION ALL over the tables that hold this source's files."""
    parts: list[str] = []
    values: list[Any] = []
    if source.published_artifacts:
        parts.append(_FILE_FROM_PUBLICATION.format(where=where.format(t="pa")))
        values += [source.publication_id, *params]
    else:
        version = "%s" if source.version_id is not None else _LATEST_VERSION
        parts.append(_FILE_FROM_VERSION.format(version=version, where=where.format(t="m")))
        values += [source.version_id if source.version_id is not None else source.latest_of]
        values += params
    if source.publication_id is not None:
        parts.append(_METADATA.format(where=where.format(t="pm")))
        values += [source.publication_id, *params]
    return " UNION ALL ".join(parts), values


def _children_bounds(relative: str) -> tuple[str, str]:
    """Every path below directory `relative` sorts between these (byte order; the
    PostgreSQL columns use the C collation for this, see migration 0002)."""
    return (relative + "/", relative + "0") if relative else ("", "\U0010ffff")


def _file_rows(sql: str, params: list[Any]) -> list[FileRow]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [_file_row(row) for row in cursor.fetchall()]


def _file_row(row: Sequence[Any]) -> FileRow:
    decoded = FileRow._make(row)
    return decoded._replace(added=_aware(decoded.added))


def _aware(value: Any) -> dt.datetime | None:
    """Raw SQL hands SQLite timestamps back as text; the ORM would have parsed them."""
    if value is None or isinstance(value, dt.datetime):
        return value.replace(tzinfo=value.tzinfo or dt.UTC) if value else None
    parsed = dt.datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.UTC)


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
        return [_remote_artifact_row(row) for row in cursor.fetchall()]


def _remote_artifact_row(row: Sequence[Any]) -> RemoteRef:
    ra_id, url, size, failed_at = row[:4]
    digest_columns = row[4 : 4 + len(DIGESTS)]
    digests = {name: value for name, value in zip(DIGESTS, digest_columns, strict=True) if value}
    remote = dict(zip(_REMOTE_COLUMNS, row[4 + len(DIGESTS) :], strict=True))
    # Encrypted columns: decrypted once per token, then a dictionary lookup.
    for name in _SEALED_REMOTE_COLUMNS:
        remote[name] = unseal_text(remote[name])
    remote["headers"] = tuple(sorted((unseal_json(remote["headers"]) or {}).items()))
    remote["tls_validation"] = bool(remote["tls_validation"])
    remote["forward_query"] = bool(remote["forward_query"])
    remote["mutable"] = parse_patterns(remote["mutable"])
    remote["updated"] = _aware(remote["updated"])
    return RemoteRef(ra_id, RemoteConfig(**remote), url, size, digests, _aware(failed_at))


def remote_config(remote_id: int) -> RemoteConfig:
    """A pull-through distribution's remote (its secrets decrypted by the model fields)."""
    return RemoteConfig.from_model(Remote.objects.get(pk=remote_id))


class KnownUrl(NamedTuple):
    """What a pull-through remote has met at a URL before: its remote artifact, and the
    artifact stored for it, if one is, with when the upstream last confirmed it and what
    it said then."""

    content_artifact_id: int
    remote_artifact: RemoteRef
    stored: ArtifactRef | None
    created: dt.datetime | None  # the stored artifact's
    validated_at: dt.datetime | None = None  # None: fetched before this was recorded
    upstream: UpstreamState = UpstreamState()


def known_url(remote_id: int, url: str) -> KnownUrl | None:
    """The remote artifact of this remote at this URL, with its stored artifact: one
    statement."""
    ra = (
        RemoteArtifact.objects.filter(remote_id=remote_id, url=url)
        .select_related("content_artifact__artifact", "remote")
        .first()
    )
    if ra is None:
        return None
    digests = {name: getattr(ra, name) for name in DIGESTS if getattr(ra, name)}
    config = RemoteConfig.from_model(ra.remote)
    ref = RemoteRef(ra.pk, config, ra.url, ra.size, digests, ra.failed_at)
    art = ra.content_artifact.artifact
    if art is None:
        return KnownUrl(ra.content_artifact_id, ref, None, None)
    stored = ArtifactRef(art.sha256, art.size, art.file)
    upstream = UpstreamState(ra.etag, ra.last_modified, ra.upstream_max_age)
    validated = ra.validated_at or art.created
    return KnownUrl(ra.content_artifact_id, ref, stored, art.created, validated, upstream)
