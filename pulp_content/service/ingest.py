"""Verified temp file -> Artifact row and links (synchronous Django, in a transaction).

A save places the file first (durably: `storage.place`) and commits its rows after; if
the rows do not commit, the file no committed row names is removed again, and if even
that cannot be decided (the database is gone), the save's journal entry stays for the
sweep (`service.audit`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote

from asgiref.sync import sync_to_async
from django.db import DatabaseError, transaction
from django.db.models import BigIntegerField, CharField, DateTimeField, Subquery, Value

from pulp_content.service.database import unit_of_work
from pulp_content.service.errors import DatabaseUnavailable
from pulp_content.service.freshness import UpstreamState, is_mutable, sibling_scope
from pulp_content.service.models import (
    Artifact,
    Content,
    ContentArtifact,
    RemoteArtifact,
    UpstreamMissing,
)
from pulp_content.service.reclaim import within_quota
from pulp_content.service.remoteurl import remote_base
from pulp_content.service.resolve import repulled
from pulp_content.service.storage import Storage, artifact_name
from pulp_content.service.types import (
    DIGESTS,
    Absent,
    ArtifactRef,
    LocalArtifact,
    Pulled,
    RemoteRef,
    RemoteSource,
)
from pulp_content.service.verify import Download

log = logging.getLogger(__name__)
T = TypeVar("T")
UPLOADS = 4  # lazy saves uploading to a bucket at once, per worker; more wait their turn


def save(storage: Storage, downloads: Sequence[Download], record: Callable[[], T]) -> T:
    """Place verified files and commit their Artifact rows with what `record()` writes,
    in one transaction; returns what `record` returned."""
    with placed(storage, downloads), transaction.atomic():
        for download in downloads:
            insert_artifact(download)
        return record()


@contextlib.contextmanager
def placed(storage: Storage, downloads: Sequence[Download]) -> Iterator[None]:
    """Place verified files in storage for rows the block commits; if the block fails,
    the files no committed row names are removed again."""
    done: list[Download] = []
    try:
        for download in downloads:
            storage.place(_partial(download), download.digests["sha256"])
            done.append(download)
    except BaseException:
        discard_unrecorded(storage, done)
        raise
    with recorded(storage, done):
        yield


@contextlib.contextmanager
def recorded(storage: Storage, done: Sequence[Download]) -> Iterator[None]:
    """Settle placed files once the block has committed their rows; if it fails, the
    files no committed row names are removed again."""
    try:
        yield
    except BaseException:
        discard_unrecorded(storage, list(done))
        raise
    for download in done:
        storage.settle(_partial(download), download.digests["sha256"])


def insert_artifact(download: Download) -> str:
    """Make sure the Artifact row of a placed download exists (one INSERT; a concurrent
    winner of the same sha256 is fine). Returns the sha256."""
    sha256 = download.digests["sha256"]
    digests = {k: v for k, v in download.digests.items() if k in DIGESTS}
    Artifact.objects.bulk_create(
        [Artifact(size=download.size, file=artifact_name(sha256), **digests)],
        ignore_conflicts=True,
    )
    return sha256


def discard_unrecorded(storage: Storage, downloads: list[Download]) -> None:
    """After a failed save: remove the placed files no committed row names (unless
    another save of the same bytes is under way), and settle. If the database cannot
    tell, leave them with their journal entries for the sweep."""
    if not downloads:
        return
    names = {artifact_name(d.digests["sha256"]) for d in downloads}
    try:
        recorded = set(Artifact.objects.filter(file__in=names).values_list("file", flat=True))
    except DatabaseError as exc:
        log.warning("a failed save left %d files for the sweep: %s", len(names), exc)
        return
    ours = {storage.marker_of(_partial(d), d.digests["sha256"]) for d in downloads}
    busy = {p.name for p in storage.placements() if p.marker not in ours}
    for download in downloads:
        name = artifact_name(download.digests["sha256"])
        if name not in recorded and name not in busy:
            storage.remove(name)
        storage.settle(_partial(download), download.digests["sha256"])


def _partial(download: Download) -> Path:
    assert download.partial is not None, "only kept downloads are saved"
    return download.partial


def commit(storage: Storage, src: RemoteSource, ra: RemoteRef, download: Download) -> None:
    """Save a verified lazy download and link it so the next request is served from storage."""
    with placed(storage, [download]):
        link(src, ra, download)


def place(storage: Storage, download: Download) -> None:
    """Place a verified lazy download (an upload, for a bucket); `commit_placed` next."""
    storage.place(_partial(download), download.digests["sha256"])


def commit_placed(storage: Storage, src: RemoteSource, ra: RemoteRef, download: Download) -> None:
    """Link a download `place` has placed, or remove it again if that fails."""
    with recorded(storage, [download]):
        link(src, ra, download)


@unit_of_work  # repeatable: every statement below is idempotent
def link(src: RemoteSource, ra: RemoteRef, download: Download) -> None:
    """The rows of a placed lazy download, in one transaction."""
    with transaction.atomic():
        sha256 = insert_artifact(download)
        artifact_id = Subquery(Artifact.objects.filter(sha256=sha256).values("pk")[:1])
        if src.content_artifact_id is not None:
            ContentArtifact.objects.filter(
                pk=src.content_artifact_id, artifact__isnull=True
            ).update(artifact=artifact_id)
        else:
            _record_pull_through(src, ra, download, sha256)
        if ra.failed_at is not None and ra.id is not None:
            RemoteArtifact.objects.filter(pk=ra.id).update(failed_at=None)


def _record_pull_through(src: RemoteSource, ra: RemoteRef, download: Download, sha256: str) -> None:
    """A pull-through fetch becomes content with a remote artifact at its URL."""
    relative = src.relative_path or ra.url.rsplit("/", 1)[-1]
    content, _ = Content.objects.get_or_create(
        relative_path=relative, sha256=sha256, defaults={"size": download.size}
    )
    ca, _ = ContentArtifact.objects.get_or_create(content=content, relative_path=relative)
    ContentArtifact.objects.filter(pk=ca.pk).update(artifact=Artifact.objects.get(sha256=sha256))
    RemoteArtifact.objects.update_or_create(
        content_artifact=ca,
        remote_id=ra.config.id,
        defaults={"url": ra.url, **pulled_fields(download)},
    )


def pulled_fields(download: Download) -> dict[str, Any]:
    """The remote artifact columns of a pull-through copy just fetched: what it is, and
    what the upstream said of it, confirmed now."""
    digests = {k: v for k, v in download.digests.items() if k in DIGESTS}
    said = download.upstream
    return {
        "size": download.size,
        **digests,
        "validated_at": dt.datetime.now(dt.UTC),
        "etag": said.etag,
        "last_modified": said.last_modified,
        "upstream_max_age": said.max_age,
    }


@unit_of_work
def mark_failed(ra: RemoteRef) -> None:
    """Record that a remote artifact failed, so the next request tries the others first."""
    assert ra.id is not None, "only recorded remote artifacts can be marked"
    RemoteArtifact.objects.filter(pk=ra.id).update(failed_at=dt.datetime.now(dt.UTC))


def stored_artifact(ra: RemoteRef) -> ArtifactRef | Absent | None:
    """The artifact a pull-through fetch of `ra` (its remote and URL) was saved as, or
    the upstream's 404 for it while it stands (`note_missing`): one statement."""
    stored = RemoteArtifact.objects.filter(
        remote_id=ra.config.id, url=ra.url, content_artifact__artifact__isnull=False
    ).values_list(
        "content_artifact__artifact__sha256",
        "content_artifact__artifact__size",
        "content_artifact__artifact__file",
        Value(None, DateTimeField()),
    )
    missing = UpstreamMissing.objects.filter(
        remote_id=ra.config.id, url=ra.url, until__gt=dt.datetime.now(dt.UTC)
    )
    if ra.config.updated is not None:  # noted before the remote changed: void
        missing = missing.filter(noted__gte=ra.config.updated)
    rows = list(
        stored.union(
            missing.values_list(
                Value("", CharField()), Value(0, BigIntegerField()), Value("", CharField()), "until"
            ),
            all=True,
        )
    )
    for sha256, size, name, until in sorted(rows, key=lambda row: row[3] is not None):
        return ArtifactRef(sha256, size, name) if until is None else Absent(until)
    return None


@unit_of_work
def note_missing(ra: RemoteRef, seconds: float) -> None:
    """The upstream answered 404 for `ra`: so it stands for `seconds`, for every process.
    Rows of the remote that have run out go with it."""
    now = dt.datetime.now(dt.UTC)
    UpstreamMissing.objects.filter(remote_id=ra.config.id, until__lte=now).delete()
    UpstreamMissing.objects.filter(remote_id=ra.config.id, url=ra.url).delete()
    until = now + dt.timedelta(seconds=seconds)
    UpstreamMissing.objects.create(remote_id=ra.config.id, url=ra.url, noted=now, until=until)


@unit_of_work  # repeatable: one UPDATE
def confirm(pulled: Pulled, said: UpstreamState) -> None:
    """A 304: the pull-through copy is current as of now, with what the upstream said."""
    # RFC 9110 §15.4.5: a 304 carries the Cache-Control and Expires a 200 would: its
    # lifetime (none: the remote's) replaces the one before (a sibling's 0 included).
    fields: dict[str, Any] = {
        "validated_at": dt.datetime.now(dt.UTC),
        "etag": said.etag,
        "last_modified": said.last_modified,
        "failed_at": None,
        "upstream_max_age": said.max_age,
    }
    ra_id = pulled.remote_artifact.id
    assert ra_id is not None, "a stored pull-through copy has its remote artifact"
    RemoteArtifact.objects.filter(pk=ra_id).update(**fields)


def replace(storage: Storage, hit: LocalArtifact, download: Download) -> None:
    """New bytes at a pull-through path: stored as a new artifact, and the remote
    artifact moves to the content they make; the old artifact stays for whatever still
    references it. Every worker's cached answers go (the trigger of a remote artifact
    that changes its content artifact says "everything")."""
    with placed(storage, [download]):
        relink(hit, download)


@unit_of_work  # repeatable: every statement below is idempotent
def relink(hit: LocalArtifact, download: Download) -> None:
    assert hit.pulled is not None and hit.relative_path is not None
    ra_id = hit.pulled.remote_artifact.id
    assert ra_id is not None, "a stored pull-through copy has its remote artifact"
    with transaction.atomic():
        sha256 = insert_artifact(download)
        artifact = Artifact.objects.get(sha256=sha256)
        content, _ = Content.objects.get_or_create(
            relative_path=hit.relative_path, sha256=sha256, defaults={"size": download.size}
        )
        ca, _ = ContentArtifact.objects.get_or_create(
            content=content, relative_path=hit.relative_path, defaults={"artifact": artifact}
        )
        ContentArtifact.objects.filter(pk=ca.pk, artifact__isnull=True).update(artifact=artifact)
        ra = RemoteArtifact.objects.get(pk=ra_id)
        # These bytes were at this URL before (a file that went back): one remote
        # artifact per content artifact and remote, the one looked up by this URL.
        RemoteArtifact.objects.filter(content_artifact=ca, remote_id=ra.remote_id).exclude(
            pk=ra_id
        ).delete()
        RemoteArtifact.objects.filter(pk=ra_id).update(
            content_artifact=ca, failed_at=None, **pulled_fields(download)
        )
        expire_siblings(hit.pulled.remote_artifact, ra_id)


def expire_siblings(ra: RemoteRef, ra_id: int) -> None:
    """New bytes at a mutable URL: the other mutable copies that change with it (a
    Release and its Packages) are due for revalidation at their next request. Their ages
    drift apart (each 304 resets one), and a new Release served with a Packages copy
    still fresh but old is a hash mismatch to apt. Lifetime 0, not an older confirmation
    time: their Age stays true, and max stale still counts from it."""
    base = str(remote_base(ra.config.url))
    siblings = RemoteArtifact.objects.filter(
        remote_id=ra.config.id, url__startswith=sibling_scope(ra.url)
    ).exclude(pk=ra_id)
    due = [
        pk
        for pk, url in siblings.values_list("pk", "url")
        if url.startswith(base) and is_mutable(unquote(url[len(base) :]), ra.config.mutable)
    ]
    RemoteArtifact.objects.filter(pk__in=due).update(upstream_max_age=0)


USE_BATCH = 500  # artifacts per UPDATE of their last use


@unit_of_work  # repeatable: an UPDATE to a time
def write_use(served: frozenset[str], when: dt.datetime) -> None:
    """These artifacts were served at `when` (`service.usage`): one UPDATE per batch.
    No change trigger fires: the time changes no answer (migration 0009)."""
    ordered = sorted(served)
    for start in range(0, len(ordered), USE_BATCH):
        batch = ordered[start : start + USE_BATCH]
        Artifact.objects.filter(sha256__in=batch).update(last_used=when)


def _report_eviction(done: asyncio.Future[Any]) -> None:
    """Log a quota's eviction that failed (the next save tries again)."""
    if not done.cancelled() and done.exception() is not None:
        log.warning("quota eviction failed: %s", done.exception())


class OrmPersist:
    """`progress.Persist` on the Django ORM, run off the event loop.

    Writes go to one thread of their own (its own connection), one at a time: they
    never queue in front of the reads that resolve requests, and SQLite gets one writer.
    """

    def __init__(
        self,
        storage: Storage,
        readers: ThreadPoolExecutor | None = None,
        changed: Callable[[Iterable[int]], None] = lambda _: None,
    ) -> None:
        self.storage = storage
        # Told (on the event loop) which content artifacts' state this process changed,
        # the moment it is written: its own cache must not wait for the notification
        # that tells every other worker.
        self.changed = changed
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="pulp-content-writer")
        # Uploads to a bucket (S3 storage) wait on the network for as long as the file
        # takes: threads of their own, so they never hold up the writer's commits nor the
        # default executor's file opens that requests wait for.
        self._uploader = ThreadPoolExecutor(UPLOADS, thread_name_prefix="pulp-content-upload")
        self._commit = sync_to_async(commit, thread_sensitive=False, executor=self._writer)
        self._commit_placed = sync_to_async(
            commit_placed, thread_sensitive=False, executor=self._writer
        )
        self._mark_failed = sync_to_async(
            mark_failed, thread_sensitive=False, executor=self._writer
        )
        # A read, as resolving is: on the readers' threads (the service's bounded ones),
        # never the writer's, so it never waits for saves.
        self._stored = sync_to_async(stored_artifact, thread_sensitive=False, executor=readers)
        self._note_missing = sync_to_async(
            note_missing, thread_sensitive=False, executor=self._writer
        )
        self._repulled = sync_to_async(
            unit_of_work(repulled), thread_sensitive=False, executor=readers
        )
        self._confirm = sync_to_async(confirm, thread_sensitive=False, executor=self._writer)
        self._replace = sync_to_async(replace, thread_sensitive=False, executor=self._writer)
        self._write_use = sync_to_async(write_use, thread_sensitive=False, executor=self._writer)

    def close(self) -> None:
        """Finish the writes in progress and stop the writer thread."""
        self._uploader.shutdown(wait=True)
        self._writer.shutdown(wait=True)

    async def commit(self, src: RemoteSource, ra: RemoteRef, download: Download) -> None:
        if self.storage.local:  # a rename: done on the writer's thread, with the rows
            await self._commit(self.storage, src, ra, download)
        else:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._uploader, place, self.storage, download)
            await self._commit_placed(self.storage, src, ra, download)
        self.changed([] if src.content_artifact_id is None else [src.content_artifact_id])
        if ra.config.quota is not None:
            self._within_quota(ra.config.id, ra.config.quota)

    def _within_quota(self, remote_id: int, quota: int) -> None:
        """After a save of a remote with a quota: its least recently used artifacts go
        until it fits, on the writer thread, after the save (nobody waits for it)."""
        loop = asyncio.get_running_loop()
        work = unit_of_work(within_quota)
        evicting = loop.run_in_executor(self._writer, work, self.storage, remote_id, quota)
        evicting.add_done_callback(_report_eviction)

    async def write_use(self, served: frozenset[str], when: dt.datetime) -> None:
        """`usage.Write`: when these artifacts were last served."""
        await self._write_use(served, when)

    async def mark_failed(self, src: RemoteSource, ra: RemoteRef) -> None:
        """Best effort: a failure that cannot be recorded is logged (by unit_of_work)."""
        with contextlib.suppress(DatabaseUnavailable):
            await asyncio.shield(self._mark_failed(ra))
            self.changed([] if src.content_artifact_id is None else [src.content_artifact_id])

    async def stored(self, ra: RemoteRef) -> ArtifactRef | Absent | None:
        return await self._stored(ra)

    async def note_missing(self, ra: RemoteRef, seconds: float) -> None:
        """Best effort: a 404 that cannot be recorded is logged (by unit_of_work); this
        worker keeps it anyway (`missing.MissingUpstream`)."""
        with contextlib.suppress(DatabaseUnavailable):
            await asyncio.shield(self._note_missing(ra, seconds))

    # -- revalidate.Refresh ----------------------------------------------------------------
    async def repulled(self, hit: LocalArtifact) -> LocalArtifact | None:
        return await self._repulled(hit)

    async def confirm(self, pulled: Pulled, said: UpstreamState) -> None:
        await asyncio.shield(self._confirm(pulled, said))

    async def replace(self, hit: LocalArtifact, download: Download) -> None:
        await asyncio.shield(self._replace(self.storage, hit, download))
