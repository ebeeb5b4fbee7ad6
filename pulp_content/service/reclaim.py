"""Reclaim space, as Pulp's reclaim-space does: the stored files of artifacts that a
client's request brought in (on_demand, pull-through) and that a remote can bring back.

What is reclaimable: an artifact every one of whose content artifacts
- has a remote artifact (a later request fetches it again, verified against the same
  digests), and
- is either in no repository version and no publication (a pull-through copy), or has
  no remote artifact of an `immediate` remote (on_demand or streamed content: the
  repository asked for it to be fetched on request);
and that no publication's generated metadata is. Never reclaimed: uploads and immediate
syncs (a publication of them must not start depending on an upstream), generated
metadata (no remote has it), and mutable pull-through copies (metadata such as
`InRelease` or a simple page: small, revalidated in place, and its upstream bytes may
have changed, which the kept digests would refuse).

Reclaiming an artifact: its content artifacts go back to lazy (artifact NULL, remote
artifacts kept), its row goes, and its file is removed after the rows commit (a crash in
between leaves a file no row names, which `storage check --repair` removes; never a row
without a file). The change triggers of migration 0006 tell every worker's resolution
cache. A running download is never broken: an artifact whose partial file is claimed
(`service.locks`), or whose save is being placed, is skipped, and the claim is held
while it is reclaimed, so no download of the same bytes starts meanwhile. A client
reading the file keeps reading it whole (an open file outlives its unlink).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.db.models.functions import Coalesce

from pulp_content.service.config import Settings
from pulp_content.service.freshness import is_mutable, parse_patterns
from pulp_content.service.locks import Claim
from pulp_content.service.models import (
    Artifact,
    ContentArtifact,
    PublishedArtifact,
    PublishedMetadata,
    RemoteArtifact,
    RepositoryVersionContent,
)
from pulp_content.service.remoteurl import remote_base
from pulp_content.service.storage import Storage

log = logging.getLogger(__name__)
BATCH = 500  # artifacts per transaction: short ones, so serving never waits long


@dataclass(frozen=True)
class Candidate:
    """A reclaimable artifact, and when it was last used (served, else stored)."""

    id: int
    sha256: str
    size: int
    file: str
    used: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "size": self.size,
            "file": self.file,
            "last_used": self.used.isoformat(),
        }


@dataclass
class Outcome:
    """What a reclaim did (or, dry, would do): the artifacts, and how many were skipped
    because a download or save of them was running."""

    dry_run: bool
    reclaimed: list[Candidate] = field(default_factory=list)
    busy: int = 0

    @property
    def size(self) -> int:
        return sum(c.size for c in self.reclaimed)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "count": len(self.reclaimed),
            "bytes": self.size,
            "busy": self.busy,
            "artifacts": [c.as_dict() for c in self.reclaimed],
        }


def _needed_link() -> QuerySet[ContentArtifact]:
    """Content artifacts (of the outer artifact) that keep it stored: nothing could fetch
    them again, or a repository holds them from an immediate remote."""
    remotes = RemoteArtifact.objects.filter(content_artifact_id=OuterRef("pk"))
    in_repository = Exists(
        RepositoryVersionContent.objects.filter(content_artifact_id=OuterRef("pk"))
    ) | Exists(PublishedArtifact.objects.filter(content_artifact_id=OuterRef("pk")))
    immediate = Exists(remotes.filter(remote__policy="immediate"))
    return ContentArtifact.objects.filter(artifact_id=OuterRef("pk")).filter(
        ~Exists(remotes) | (in_repository & immediate)
    )


def reclaimable(
    remote_id: int | None = None, used_before: dt.datetime | None = None
) -> QuerySet[Artifact]:
    """The reclaimable artifacts (of one remote's content, used before a time), least
    recently used first."""
    linked = ContentArtifact.objects.filter(artifact_id=OuterRef("pk"))
    found = (
        Artifact.objects.filter(Exists(linked))
        .exclude(Exists(_needed_link()))
        .exclude(Exists(PublishedMetadata.objects.filter(artifact_id=OuterRef("pk"))))
        .annotate(used=Coalesce("last_used", "created"))
    )
    if remote_id is not None:
        of_remote = RemoteArtifact.objects.filter(
            content_artifact__artifact_id=OuterRef("pk"), remote_id=remote_id
        )
        found = found.filter(Exists(of_remote))
    if used_before is not None:
        found = found.filter(used__lt=used_before)
    return found.order_by("used", "pk")


def candidates(
    remote_id: int | None = None, used_before: dt.datetime | None = None
) -> list[Candidate]:
    """`reclaimable`, as values, without the mutable pull-through copies."""
    found_rows = reclaimable(remote_id, used_before)
    # `used` is the annotation `reclaimable` made (the stubs see the model's fields only).
    rows = found_rows.values_list("pk", "sha256", "size", "file", "used")  # type: ignore[misc]
    found = [Candidate(*row) for row in rows]
    mutable = _mutable_pull_through({c.id for c in found})
    return [c for c in found if c.id not in mutable]


def _mutable_pull_through(artifact_ids: set[int]) -> set[int]:
    """Those of these artifacts that are a mutable pull-through copy (revalidated in
    place; see the module's docstring)."""
    if not artifact_ids:
        return set()
    pulled = RemoteArtifact.objects.filter(content_artifact__artifact_id__in=artifact_ids).exclude(
        Q(content_artifact__repositoryversioncontent__isnull=False)
        | Q(content_artifact__publishedartifact__isnull=False)
    )
    mutable = set()
    rows = pulled.values_list(
        "content_artifact__artifact_id", "url", "remote__url", "remote__mutable"
    )
    for artifact_id, url, remote_url, own in rows:
        base = str(remote_base(remote_url))
        if url.startswith(base) and is_mutable(unquote(url[len(base) :]), parse_patterns(own)):
            mutable.add(artifact_id)
    return mutable


def reclaim(
    storage: Storage,
    remote_id: int | None = None,
    used_before: dt.datetime | None = None,
    dry_run: bool = False,
    enough: int | None = None,
) -> Outcome:
    """Reclaim what `candidates` finds, least recently used first (only until `enough`
    bytes are freed, when given); dry: only say what."""
    outcome = Outcome(dry_run)
    found = candidates(remote_id, used_before)
    if enough is not None:
        found = _first_bytes(found, enough)
    if dry_run:
        outcome.reclaimed = found
        return outcome
    for batch in _batches(found):
        _reclaim_batch(storage, batch, outcome)
    return outcome


def _first_bytes(found: list[Candidate], enough: int) -> list[Candidate]:
    """The first candidates whose sizes add up to `enough` bytes (or all of them)."""
    taken, total = [], 0
    for candidate in found:
        if total >= enough:
            break
        taken.append(candidate)
        total += candidate.size
    return taken


def _batches(found: list[Candidate]) -> Iterator[list[Candidate]]:
    for start in range(0, len(found), BATCH):
        yield found[start : start + BATCH]


def _reclaim_batch(storage: Storage, batch: list[Candidate], outcome: Outcome) -> None:
    """Claim, unlink the rows in one transaction, remove the files, let go."""
    claims: list[Claim] = []
    try:
        free = _claim_idle(storage, batch, claims)
        outcome.busy += len(batch) - len(free)
        gone = _unlink_rows(free)
        _remove_files(storage, gone)
        outcome.reclaimed += gone
    finally:
        for claim in claims:
            claim.release()
        storage.locks.flush()


def _claim_idle(storage: Storage, batch: list[Candidate], claims: list[Claim]) -> list[Candidate]:
    """The candidates nobody downloads or saves now, each with its download claim taken
    (appended to `claims`): a request for the same bytes follows no download meanwhile."""
    placing = {p.sha256 for p in storage.placements()}
    free = []
    for candidate in batch:
        if candidate.sha256 in placing:
            continue
        claim = storage.locks.claim(storage.partial_of(candidate.sha256))
        if claim is None:
            continue
        claims.append(claim)
        free.append(candidate)
    return free


def _unlink_rows(free: list[Candidate]) -> list[Candidate]:
    """In one transaction: the candidates still reclaimable (asked again: rows may have
    changed since) go back to lazy and their rows go. Returns those."""
    if not free:
        return []
    by_id = {c.id: c for c in free}
    with transaction.atomic():
        still = list(reclaimable().filter(pk__in=by_id).values_list("pk", flat=True))
        ContentArtifact.objects.filter(artifact_id__in=still).update(artifact=None)
        Artifact.objects.filter(pk__in=still).delete()
    return [by_id[pk] for pk in still]


def _remove_files(storage: Storage, gone: list[Candidate]) -> None:
    """After the commit: the files of the rows that went, but for a save of the same
    bytes that began placing meanwhile (a sync: its row will name the file again).

    Not closed: a save that holds no claim on the sha256 (a sync's batch, a pull-through
    first fetch) and places the same bytes between this check and the unlink loses its
    file; `storage check --repair` then makes its content lazy again. Closing it needs a
    remove that can be undone (rename aside, check, put back), on every storage."""
    placing = {p.sha256 for p in storage.placements()}
    for candidate in gone:
        if candidate.sha256 not in placing:
            storage.remove(candidate.file)


def within_quota(storage: Storage, remote_id: int, quota: int) -> Outcome:
    """Reclaim a remote's least recently used artifacts until what is left of its
    reclaimable ones fits in `quota` bytes (run after a save of its content commits)."""
    stored = sum(c.size for c in candidates(remote_id))
    if stored <= quota:
        return Outcome(dry_run=False)
    outcome = reclaim(storage, remote_id, enough=stored - quota)
    log.info(
        "remote %d over its quota of %d bytes: reclaimed %d artifacts, %d bytes",
        remote_id,
        quota,
        len(outcome.reclaimed),
        outcome.size,
    )
    return outcome


def reclaim_space(
    settings: Settings,
    remote_id: int | None = None,
    older_than_days: float | None = None,
    dry_run: bool = False,
) -> Outcome:
    """`pulp-content reclaim`: of the remote `remote_id`'s content (all, when None), what
    was last used more than `older_than_days` days ago (anything, when None)."""
    from pulp_content.service.storage import open_storage

    used_before = None
    if older_than_days is not None:
        used_before = dt.datetime.now(dt.UTC) - dt.timedelta(days=older_than_days)
    storage = open_storage(settings)
    try:
        return reclaim(storage, remote_id, used_before, dry_run)
    finally:
        storage.locks.close()
