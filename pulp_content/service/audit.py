"""Storage against the database: what interrupted saves leave behind, swept at start-up,
and `pulp-content storage check`, which compares every Artifact row with every file.

A save places its file, then commits its row (`ingest`); until the row has committed, a
journal entry under the save's claim names the file (`storage.place`). So the start-up
sweep needs no scan of storage: partial files and journal entries nobody holds the
claim on are what a killed process left, and a placed file no row names goes with its
entry. Another save of the same bytes that is under way keeps the file.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from django.db import transaction

from pulp_content.service.config import Settings
from pulp_content.service.models import Artifact, ContentArtifact, PublishedMetadata, RemoteArtifact
from pulp_content.service.storage import (
    FileSystemStorage,
    Placement,
    open_storage,
    sha256_of,
    sha256_of_stream,
)

log = logging.getLogger(__name__)
ROW_WITHOUT_FILE = "row without file"
FILE_WITHOUT_ROW = "file without row"
WRONG_BYTES = "wrong bytes"
PARTIAL = "partial file of no running download"
UNFINISHED = "unfinished save"


@dataclass(frozen=True)
class Problem:
    """One inconsistency: its kind, the storage name, and what --repair made of it."""

    kind: str
    name: str
    detail: str = ""
    repaired: str | None = None  # what was done; None: left as it is
    unrepaired: str | None = None  # why it was left, when a repair was asked for

    def line(self) -> str:
        text = f"{self.kind}: {self.name}" + (f" ({self.detail})" if self.detail else "")
        if self.repaired is not None:
            return f"{text}: repaired, {self.repaired}"
        if self.unrepaired is not None:
            return f"{text}: not repaired, {self.unrepaired}"
        return text

    def as_dict(self) -> dict[str, str | None]:
        return asdict(self)


# -- the start-up sweep ------------------------------------------------------------------------
def sweep(storage: FileSystemStorage) -> tuple[int, int]:
    """Remove what killed processes left: partial files, and files a save placed without
    its row committing. Returns (partial files, placed files) removed."""
    partials = storage.sweep_partials()
    removed = sum(1 for _, gone in sweep_placements(storage) if gone)
    return partials, removed


def sweep_placements(storage: FileSystemStorage) -> list[tuple[Placement, bool]]:
    """Settle the saves nobody runs any more; with each, whether its file was removed."""
    settled = []
    for placement in storage.placements():
        claim = storage.locks.claim(placement.marker)
        if claim is None:
            continue  # its save is running
        try:
            gone = _discard_if_unrecorded(storage, placement)
            placement.marker.unlink(missing_ok=True)
            settled.append((placement, gone))
        finally:
            claim.release()
    return settled


def _discard_if_unrecorded(storage: FileSystemStorage, placement: Placement) -> bool:
    if Artifact.objects.filter(file=placement.name).exists() or _saving(storage, placement):
        return False
    if not storage.exists(placement.name):
        return False
    storage.remove(placement.name)
    return True


def _saving(storage: FileSystemStorage, other_than: Placement) -> bool:
    """Whether another save of the same bytes is under way (its claim is held)."""
    return any(
        p.sha256 == other_than.sha256
        and p.marker != other_than.marker
        and storage.locks.held(p.marker)
        for p in storage.placements()
    )


# -- storage check -----------------------------------------------------------------------------
def check_storage(settings: Settings, repair: bool = False) -> list[Problem]:
    """`check` on the storage of `settings` (what `pulp-content storage check` runs)."""
    storage = open_storage(settings)
    try:
        return check(storage, repair)
    finally:
        storage.close()


def check(storage: FileSystemStorage, repair: bool = False) -> list[Problem]:
    """Every inconsistency between storage and the Artifact rows, repaired where asked
    and possible: leftovers of interrupted saves, rows whose file is missing, files no
    row names, files whose bytes do not hash to their name."""
    problems = _leftovers(storage, repair)
    # The order of the listings matters while saves run: a row commits after its file is
    # placed, so rows listed first all have their files in the listing that follows; a
    # save's journal entry is in place before its file, so entries listed after the files
    # name every file a running save has placed; what is left is looked up once more.
    rows = dict(Artifact.objects.values_list("file", "pk").iterator())
    files = set(stored_names(storage))
    in_flight = {p.name for p in storage.placements()}
    candidates = files - rows.keys() - in_flight
    recorded = set(Artifact.objects.filter(file__in=candidates).values_list("file", flat=True))
    for name in sorted(rows.keys() - files):
        problems.append(_fix_missing(ROW_WITHOUT_FILE, name, rows[name], repair))
    for name in sorted(candidates - recorded):
        problems.append(_fix_orphan(storage, name, repair))
    for name in sorted(files & rows.keys()):
        actual = storage.digest(name)
        if actual != sha256_of(name):
            problems.append(_fix_wrong_bytes(storage, name, rows[name], actual, repair))
    return problems


def _leftovers(storage: FileSystemStorage, repair: bool) -> list[Problem]:
    """Partial files and unfinished saves nobody holds the claim on."""
    partials = [p for p in storage.partials() if not storage.locks.held(p)]
    if not repair:
        unfinished = [p for p in storage.placements() if not storage.locks.held(p.marker)]
        return [Problem(PARTIAL, f"tmp/{p.name}") for p in partials] + [
            Problem(UNFINISHED, p.name) for p in unfinished
        ]
    storage.sweep_partials()
    problems = [Problem(PARTIAL, f"tmp/{p.name}", repaired="removed") for p in partials]
    for placement, gone in sweep_placements(storage):
        done = "its file had no row and was removed" if gone else "its row had committed"
        problems.append(Problem(UNFINISHED, placement.name, repaired=done))
    return problems


def stored_names(storage: FileSystemStorage) -> Iterator[str]:
    """The storage names of every file under artifact/ (every object, on S3)."""
    return storage.names()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_of_stream(handle)


def _fix_orphan(storage: FileSystemStorage, name: str, repair: bool) -> Problem:
    problem = Problem(FILE_WITHOUT_ROW, name)
    if not repair:
        return problem
    with _claimed(storage, name) as claimed:
        if not claimed:
            return replace(problem, unrepaired="a download of it is under way")
        saving = name in {p.name for p in storage.placements()}
        if saving or Artifact.objects.filter(file=name).exists():
            return replace(problem, repaired="a save has just recorded it")
        storage.remove(name)
    return replace(problem, repaired="removed")


@contextlib.contextmanager
def _claimed(storage: FileSystemStorage, name: str) -> Iterator[bool]:
    """Hold the claim lazy downloads of these bytes hold from download to commit (for a
    name that is no artifact's, nobody's); yields whether it was free."""
    sha256 = sha256_of(name)
    claim = storage.locks.claim(storage.partial_of(sha256)) if sha256 else None
    if sha256 and claim is None:
        yield False
        return
    try:
        yield True
    finally:
        if claim is not None:
            claim.release()


def _fix_missing(kind: str, name: str, pk: int, repair: bool, detail: str = "") -> Problem:
    """A row whose file is missing or wrong: content that a remote can supply again
    becomes lazy again; the row goes once nothing needs it."""
    problem = Problem(kind, name, detail)
    if not repair:
        return problem
    with transaction.atomic():
        fetchable = RemoteArtifact.objects.values("content_artifact_id")
        relinked = ContentArtifact.objects.filter(artifact_id=pk, pk__in=fetchable).update(
            artifact=None
        )
        stuck = list(
            ContentArtifact.objects.filter(artifact_id=pk).values_list("relative_path", flat=True)
        )
        published = PublishedMetadata.objects.filter(artifact_id=pk).count()
        if not stuck and not published:
            Artifact.objects.filter(pk=pk).delete()
    done = f"{_count(relinked, 'content unit')} lazy again" if relinked else ""
    if stuck or published:
        needed = f"no remote artifact for {', '.join(stuck[:3])}"
        if published and not stuck:
            needed = f"the metadata of {_count(published, 'publication')}: publish again"
        return replace(problem, unrepaired="; ".join(filter(None, [done, needed])))
    return replace(problem, repaired="; ".join(filter(None, [done, "row removed"])))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _fix_wrong_bytes(
    storage: FileSystemStorage, name: str, pk: int, actual: str, repair: bool
) -> Problem:
    detail = f"the bytes hash to {actual}"
    problem = Problem(WRONG_BYTES, name, detail)
    if not repair:
        return problem
    fixed = _fix_missing(WRONG_BYTES, name, pk, repair, detail)
    if fixed.repaired is None:
        return fixed  # still needed by content nothing can download again: left alone
    # Nothing points at the file any more: the next download puts the right bytes here.
    with _claimed(storage, name) as claimed:
        if claimed and storage.digest(name) == actual:
            storage.remove(name)
    return replace(fixed, repaired=f"{fixed.repaired}; file removed")
