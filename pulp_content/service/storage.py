"""Content-addressed file storage; another backend is another class with these methods."""

from __future__ import annotations

import contextlib
import itertools
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Protocol

from pulp_content.service.config import Settings
from pulp_content.service.locks import PARTIAL_SUFFIX, Claim, FileLocks, Locks, locks_for

__all__ = ["PARTIAL_SUFFIX", "FileSystemStorage", "PartialBatch", "Placement", "artifact_name"]
# Downloads in progress and their locks are the service's alone; stored artifacts keep
# the default mode, for a front web server that is given access (--delegate).
TMP_MODE = 0o700
PLACING_SUFFIX = ".placing"


@dataclass(frozen=True)
class Placement:
    """A save between placing its file and settling (its rows committed, or it failed):
    the journal entry beside the partial file, and the artifact it placed."""

    marker: Path
    sha256: str

    @property
    def name(self) -> str:
        return artifact_name(self.sha256)


class Storage(Protocol):
    """Where artifacts live and where downloads are assembled."""

    locks: Locks  # who writes which partial file (service.locks)

    def path_of(self, name: str) -> Path: ...
    def remove(self, name: str) -> bool: ...
    def new_partial(self, name: str | None = None) -> Path: ...
    def partial_of(self, name: str) -> Path: ...
    def open_partial(self, partial: Path) -> IO[bytes]: ...
    def batch(self) -> PartialBatch: ...
    def place(self, partial: Path, sha256: str) -> str: ...
    def settle(self, partial: Path, sha256: str) -> None: ...
    def placements(self) -> list[Placement]: ...
    def marker_of(self, partial: Path, sha256: str) -> Path: ...
    def sweep_partials(self) -> int: ...
    def partials(self) -> list[Path]: ...
    def check_writable(self) -> None: ...


class PartialBatch:
    """Partial files under one lock, held from creation until the batch is closed: for
    work that keeps many files until it is done (a sync), so that a service starting on
    the same storage meanwhile does not sweep them away as a crash's leftovers."""

    def __init__(self, tmp: Path, locks: Locks) -> None:
        tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
        self.tmp = tmp
        self.name = uuid.uuid4().hex
        self._numbers = itertools.count()
        self._locks = locks
        claim = locks.claim(tmp / f"{self.name}{PARTIAL_SUFFIX}")
        assert claim is not None, "a fresh name: nobody else has it"
        self.claim: Claim = claim

    def new(self) -> Path:
        return self.tmp / f"{self.name}-{next(self._numbers)}{PARTIAL_SUFFIX}"

    def close(self) -> None:
        """Remove what is left of the batch's partial files, and drop the lock (journal
        entries of saves that did not settle stay, for the sweep)."""
        for leftover in self.tmp.glob(f"{self.name}-*{PARTIAL_SUFFIX}"):
            leftover.unlink(missing_ok=True)
        self.claim.release()
        self._locks.flush()  # gone when this returns, as a `with` block promises

    def __enter__(self) -> PartialBatch:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def artifact_name(sha256: str) -> str:
    """The storage name of the artifact with this digest: artifact/ab/cdef..."""
    return f"artifact/{sha256[:2]}/{sha256[2:]}"


def sha256_of(name: str) -> str | None:
    """The digest a storage name stands for (artifact_name reversed); None: not one."""
    parts = name.split("/")
    if len(parts) != 3 or parts[0] != "artifact" or len(parts[1]) != 2:
        return None
    digest = parts[1] + parts[2]
    if len(digest) != 64 or digest.strip("0123456789abcdef"):
        return None
    return digest


class FileSystemStorage:
    """Artifacts under `root/artifact/`, partial downloads under `root/tmp/` (same filesystem,
    so a verified download moves into place with one atomic rename)."""

    def __init__(self, root: Path, locks: Locks | None = None) -> None:
        self.root = root.resolve()
        self.tmp = self.root / "tmp"
        self.locks: Locks = locks or FileLocks()

    def path_of(self, name: str) -> Path:
        """The absolute path of a stored file; refuses names that could leave the root.

        Names come from the database, never from a request, and are checked lexically
        (no symlink resolution: this runs for every stored file served).
        """
        parts = name.split("/")
        if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in name:
            raise ValueError(f"storage name outside the storage root: {name!r}")
        return self.root.joinpath(*parts)

    def remove(self, name: str) -> bool:
        """Remove a stored file (whether it was there). A reader that has it open keeps
        reading it whole: on a local filesystem an open file outlives its name."""
        try:
            self.path_of(name).unlink()
        except FileNotFoundError:
            return False
        return True

    def new_partial(self, name: str | None = None) -> Path:
        """A temp file path for a download in progress: `name` (an artifact's sha256, so
        other processes find it) or a fresh unique one."""
        self.tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
        return self.partial_of(name or uuid.uuid4().hex)

    def partial_of(self, name: str) -> Path:
        """Where the partial file of download `name` is (or would be)."""
        return self.tmp / f"{name}{PARTIAL_SUFFIX}"

    def open_partial(self, partial: Path) -> IO[bytes]:
        """Create `partial` (a path from `partial_of`) for writing, and for reading back:
        a follower's handle is a duplicate of this one (see `SharedDownload`)."""
        self.tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
        return open(partial, "w+b")

    def batch(self) -> PartialBatch:
        """A set of partial files kept (and locked) together until it is closed."""
        return PartialBatch(self.tmp, self.locks)

    def place(self, partial: Path, sha256: str) -> str:
        """Move a verified partial file into content-addressed storage, durably; return its
        name. Call `settle` once the rows naming it have committed (or it is gone).

        The bytes reach the disk before the name does, and the name before the caller
        commits a row (a power cut never leaves a row naming an empty file). Until
        `settle`, a journal entry beside the partial file, under the same claim, names the
        artifact: a save that dies before its row commits is cleaned up by the sweep.
        """
        name = artifact_name(sha256)
        target = self.path_of(name)
        fsync(partial)
        self.marker_of(partial, sha256).touch()
        fsync(self.tmp)  # the journal entry is on disk before the file is in place
        _make_dirs(target.parent)
        # Identical bytes under the same name, so a concurrent winner is harmless.
        os.replace(partial, target)
        fsync(target.parent)
        return name

    def marker_of(self, partial: Path, sha256: str) -> Path:
        """The journal entry of placing `partial` as artifact `sha256`."""
        stem = partial.name.removesuffix(PARTIAL_SUFFIX)
        return partial.with_name(f"{stem}.{sha256}{PLACING_SUFFIX}")

    def settle(self, partial: Path, sha256: str) -> None:
        """The save of `partial` is over: its rows committed, or its file was removed."""
        self.marker_of(partial, sha256).unlink(missing_ok=True)

    def placements(self) -> list[Placement]:
        """Saves that placed a file and have not settled: running, or died."""
        if not self.tmp.is_dir():
            return []
        return [
            Placement(marker, marker.name.split(".")[1])
            for marker in sorted(self.tmp.glob(f"*{PLACING_SUFFIX}"))
        ]

    def sweep_partials(self) -> int:
        """Remove partial files left by a crash (no live download holds their lock);
        return how many went. Safe while other processes download into the same place."""
        if not self.tmp.is_dir():
            return 0
        for lock in self.tmp.glob("*.lock"):
            # A killed holder's lock file (flock): taking and dropping the lock removes it.
            stale = self.locks.claim(lock.with_suffix(PARTIAL_SUFFIX))
            if stale is not None:
                stale.release()
        removed = 0
        for entry in self.tmp.glob(f"*{PARTIAL_SUFFIX}"):
            claim = self.locks.claim(entry)
            if claim is None:
                continue  # a download in progress, in this process or another
            try:
                entry.unlink(missing_ok=True)
                removed += 1
            finally:
                claim.release()
        self.locks.flush()  # the lock files of what went are gone too
        return removed

    def partials(self) -> list[Path]:
        """Partial files present now (tests assert none are left behind)."""
        return sorted(self.tmp.glob(f"*{PARTIAL_SUFFIX}")) if self.tmp.is_dir() else []

    def check_writable(self) -> None:
        """Raise OSError unless a download could be assembled here now (readiness). The
        partial files' directory is made as a download makes it; no file is written."""
        self.tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
        if not os.access(self.tmp, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {self.tmp}")
        if os.statvfs(self.tmp).f_flag & os.ST_RDONLY:  # root passes os.access even there
            raise OSError(f"{self.tmp} is on a read-only filesystem")


def open_storage(settings: Settings) -> FileSystemStorage:
    """The storage of these settings, with the download claims that fit its database
    (flocks on SQLite, advisory locks on PostgreSQL)."""
    return FileSystemStorage(settings.storage_root, locks_for(settings.database_url))


def fsync(path: Path) -> None:
    """Flush a file's bytes, or a directory's entries, to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _make_dirs(directory: Path) -> None:
    """mkdir -p, each new directory's entry flushed to the disk in its parent."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for new in reversed(missing):
        with contextlib.suppress(FileExistsError):
            new.mkdir()
        fsync(new.parent)
