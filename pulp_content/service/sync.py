"""Sync a file repository from its remote's PULP_MANIFEST into a new repository version.

Network work (the manifest, and every artifact for `immediate`) happens first, with
nothing written to the database; the version is then recorded in one transaction, so
a failed sync leaves the database and storage as they were.
"""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from pulp_content.service.catalog import get_named, latest_version
from pulp_content.service.errors import InvalidInput, UpstreamError
from pulp_content.service.ingest import save
from pulp_content.service.models import (
    Artifact,
    Content,
    ContentArtifact,
    Remote,
    RemoteArtifact,
    Repository,
    RepositoryVersion,
    RepositoryVersionContent,
)
from pulp_content.service.paths import BadPath, clean_relative_path
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.remoteurl import beside
from pulp_content.service.storage import PartialBatch, Storage
from pulp_content.service.upstream import HttpUpstream, chunks
from pulp_content.service.verify import Download, Verifier

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")
MAX_MANIFEST = 256 * 1024 * 1024
CHUNK = 256 * 1024
Progress = Callable[[int], None]


@dataclass(frozen=True)
class ManifestLine:
    relative_path: str
    sha256: str
    size: int


def parse_manifest(text: str) -> list[ManifestLine]:
    """The lines of a PULP_MANIFEST; a malformed line is an error naming its number."""
    lines: list[ManifestLine] = []
    seen: set[str] = set()
    for number, row in enumerate(csv.reader(text.splitlines()), start=1):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        where = f"PULP_MANIFEST line {number}"
        if len(row) != 3:
            raise InvalidInput(
                f"{where}: expected relative_path,sha256,size, got {len(row)} fields"
            )
        path, sha256, size = (field.strip() for field in row)
        try:
            path = clean_relative_path(path)
        except BadPath as exc:
            raise InvalidInput(f"{where}: {exc}") from None
        if not _SHA256.match(sha256):
            raise InvalidInput(f"{where}: {sha256!r} is not a sha256 hex digest")
        if not size.isdigit():
            raise InvalidInput(f"{where}: size {size!r} is not a non-negative integer")
        if path in seen:
            raise InvalidInput(f"{where}: {path!r} is listed twice")
        seen.add(path)
        lines.append(ManifestLine(path, sha256.lower(), int(size)))
    return lines


async def fetch_manifest(upstream: HttpUpstream, remote: RemoteConfig) -> str:
    async with upstream.get(remote, remote.url) as response:
        body = bytearray()
        async for chunk in chunks(response, CHUNK):
            body += chunk
            if len(body) > MAX_MANIFEST:
                raise InvalidInput(f"{remote.url}: manifest is larger than {MAX_MANIFEST} bytes")
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidInput(f"{remote.url}: manifest is not UTF-8 text") from None


async def fetch_artifact(
    upstream: HttpUpstream,
    batch: PartialBatch,
    remote: RemoteConfig,
    url: str,
    line: ManifestLine,
) -> Download:
    """Download one file to a partial file and verify it; the partial is removed on failure."""
    verifier = Verifier(url, line.size, {"sha256": line.sha256})
    partial = batch.new()
    try:
        async with upstream.get(remote, url) as response:
            with open(partial, "wb") as out:
                async for chunk in chunks(response, CHUNK):
                    verifier.update(chunk)
                    out.write(chunk)
        return Download(partial, verifier.received, verifier.finish())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise


async def read_manifest(remote: RemoteConfig) -> str:
    """The text of the remote's PULP_MANIFEST."""
    upstream = HttpUpstream()
    try:
        return await fetch_manifest(upstream, remote)
    finally:
        await upstream.aclose()


async def fetch_all(
    batch: PartialBatch,
    remote: RemoteConfig,
    lines: list[ManifestLine],
    progress: Progress,
) -> list[Download]:
    """Every artifact of `lines`, `download_concurrency` at a time, each verified."""
    upstream = HttpUpstream()
    limit = asyncio.Semaphore(remote.download_concurrency)

    async def one(line: ManifestLine) -> Download:
        async with limit:
            url = beside(remote.url, line.relative_path)
            done = await fetch_artifact(upstream, batch, remote, url, line)
        progress(1)
        return done

    tasks = [asyncio.ensure_future(one(line)) for line in lines]
    try:
        return list(await asyncio.gather(*tasks))
    except BaseException:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise  # the caller closes the batch, which removes the partial files
    finally:
        await upstream.aclose()


def sync(
    storage: Storage,
    repository: str,
    remote: str | None = None,
    progress: Progress | None = None,
    on_total: Callable[[int], None] | None = None,
) -> RepositoryVersion:
    """Mirror the remote's manifest into a new version of `repository`."""
    repo = get_named(Repository, repository)
    remote_row: Remote | None = get_named(Remote, remote) if remote else repo.remote
    if remote_row is None:
        raise InvalidInput(f"repository {repository!r} has no remote: pass --remote NAME")
    config = RemoteConfig.from_model(remote_row)
    lines = parse_manifest(asyncio.run(read_manifest(config)))
    missing: list[ManifestLine] = []
    if config.policy == "immediate":
        have = set(
            Artifact.objects.filter(sha256__in={ln.sha256 for ln in lines}).values_list(
                "sha256", flat=True
            )
        )
        missing = list({ln.sha256: ln for ln in lines if ln.sha256 not in have}.values())
    if on_total is not None:
        on_total(len(missing))
    with storage.batch() as batch:
        downloads = (
            asyncio.run(fetch_all(batch, config, missing, progress or (lambda n: None)))
            if missing
            else []
        )
        return record_version(storage, repo, remote_row, lines, downloads)


def record_version(
    storage: Storage,
    repo: Repository,
    remote: Remote,
    lines: list[ManifestLine],
    downloads: Iterable[Download],
) -> RepositoryVersion:
    """Write artifacts, content, remote artifacts and the new version in one transaction."""
    return save(storage, list(downloads), lambda: _record(repo, remote, lines))


def _record(repo: Repository, remote: Remote, lines: list[ManifestLine]) -> RepositoryVersion:
    now = dt.datetime.now(dt.UTC)
    Content.objects.bulk_create(
        [Content(relative_path=ln.relative_path, sha256=ln.sha256, size=ln.size) for ln in lines],
        ignore_conflicts=True,
    )
    contents = _by_key(
        Content.objects.filter(sha256__in={ln.sha256 for ln in lines}),
        lambda c: (c.relative_path, c.sha256),
    )
    artifacts = dict(
        Artifact.objects.filter(sha256__in={ln.sha256 for ln in lines}).values_list("sha256", "pk")
    )
    wanted = [contents[(ln.relative_path, ln.sha256)] for ln in lines]
    ContentArtifact.objects.bulk_create(
        [ContentArtifact(content=c, relative_path=c.relative_path) for c in wanted],
        ignore_conflicts=True,
    )
    cas = _by_key(ContentArtifact.objects.filter(content__in=wanted), lambda ca: ca.content_id)
    sha_of = {c.pk: c.sha256 for c in wanted}
    unlinked = [
        ca for ca in cas.values() if ca.artifact_id is None and sha_of[ca.content_id] in artifacts
    ]
    for ca in unlinked:
        ca.artifact_id = artifacts[sha_of[ca.content_id]]
    ContentArtifact.objects.bulk_update(unlinked, ["artifact"])
    RemoteArtifact.objects.bulk_create(
        [
            RemoteArtifact(
                content_artifact=cas[c.pk],
                remote=remote,
                url=beside(remote.url, c.relative_path),
                size=c.size,
                sha256=c.sha256,
            )
            for c in wanted
        ],
        update_conflicts=True,
        unique_fields=["content_artifact", "remote"],
        update_fields=["url", "size", "sha256"],
    )
    previous = latest_version(repo)
    added_before = dict(
        RepositoryVersionContent.objects.filter(version=previous).values_list("content_id", "added")
    )
    version = RepositoryVersion.objects.create(repository=repo, number=previous.number + 1)
    RepositoryVersionContent.objects.bulk_create(
        RepositoryVersionContent(
            version=version,
            content=c,
            content_artifact=cas[c.pk],
            relative_path=c.relative_path,
            added=added_before.get(c.pk, now),
        )
        for c in wanted
    )
    return version


def _by_key(rows: Iterable[object], key: Callable[..., object]) -> dict:  # type: ignore[type-arg]
    return {key(row): row for row in rows}


__all__ = ["UpstreamError", "parse_manifest", "sync"]
