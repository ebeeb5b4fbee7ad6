"""Content-addressed storage: a filesystem, or an S3 bucket (`S3Storage`, whose downloads
in progress are still assembled on the local filesystem); another backend is another
class with these methods."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import logging
import os
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, BinaryIO, Protocol

from pulp_content.service.config import Settings
from pulp_content.service.errors import StorageUnavailable
from pulp_content.service.locks import PARTIAL_SUFFIX, Claim, FileLocks, Locks, locks_for

__all__ = [
    "PARTIAL_SUFFIX",
    "FileSystemStorage",
    "PartialBatch",
    "Placement",
    "S3Storage",
    "artifact_name",
]
# Downloads in progress and their locks are the service's alone; stored artifacts keep
# the default mode, for a front web server that is given access (--delegate).
TMP_MODE = 0o700
PLACING_SUFFIX = ".placing"
DIGEST_BLOCK = 1024 * 1024


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
    # Stored files are on this host's disk (path_of names them); False: in a bucket, and
    # path_of names a local path that never exists.
    local: bool

    def path_of(self, name: str) -> Path: ...
    def exists(self, name: str) -> bool: ...
    def remove(self, name: str) -> None: ...
    def names(self) -> Iterator[str]: ...
    def digest(self, name: str) -> str: ...
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
    def close(self) -> None: ...


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

    local = True

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

    def exists(self, name: str) -> bool:
        """Whether the stored file `name` is there."""
        return self.path_of(name).exists()

    def remove(self, name: str) -> None:
        """Remove a stored file (gone already is fine). A reader that has it open keeps
        reading it whole: on a local filesystem an open file outlives its name."""
        self.path_of(name).unlink(missing_ok=True)

    def names(self) -> Iterator[str]:
        """The storage names of every file under artifact/."""
        top = self.root / "artifact"
        if not top.is_dir():
            return
        for path in top.rglob("*"):
            if path.is_file():
                yield path.relative_to(self.root).as_posix()

    def digest(self, name: str) -> str:
        """The sha256 of a stored file's bytes, read a block at a time."""
        with open(self.path_of(name), "rb") as handle:
            return sha256_of_stream(handle)

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

    def close(self) -> None:
        """Drop the download claims' connection (and a bucket's client): the end of use."""
        self.locks.close()

    def check_writable(self) -> None:
        """Raise OSError unless a download could be assembled here now (readiness). The
        partial files' directory is made as a download makes it; no file is written."""
        self.tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
        if not os.access(self.tmp, os.W_OK | os.X_OK):
            raise PermissionError(f"cannot write to {self.tmp}")
        if os.statvfs(self.tmp).f_flag & os.ST_RDONLY:  # root passes os.access even there
            raise OSError(f"{self.tmp} is on a read-only filesystem")


def open_storage(settings: Settings, serving: bool = False) -> FileSystemStorage:
    """The storage of these settings, with the download claims that fit its database
    (flocks on SQLite, advisory locks on PostgreSQL): a filesystem, or a bucket (whose
    downloads in progress are assembled on the local filesystem all the same). A bucket
    `serving` content tells other hosts where to read its downloads (`service.peers`)."""
    if settings.s3_location is not None:
        peer_url = settings.peer_url if serving else None
        locks = locks_for(settings.database_url, peer_url)
        bucket, prefix = settings.s3_location
        return S3Storage(settings.storage_root, bucket, prefix, locks)
    locks = locks_for(settings.database_url)
    return FileSystemStorage(settings.storage_root, locks)


def sha256_of_stream(handle: IO[bytes] | BinaryIO) -> str:
    """The sha256 of what a file-like object holds from here on, read a block at a time."""
    digest = hashlib.sha256()
    while block := handle.read(DIGEST_BLOCK):
        digest.update(block)
    return digest.hexdigest()


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


# -- S3 ------------------------------------------------------------------------------------------
# Artifacts as objects in an S3 bucket (anything that speaks its API: AWS, SeaweedFS,
# MinIO, Ceph).
#
# Only placing differs from the filesystem storage: downloads in progress, their claims
# and the journal of saves stay on this host's disk (`FileSystemStorage` under the local
# root), and a verified partial file is uploaded (multipart when large) before its row is
# committed. The journal entry is written before the upload starts, so a process killed
# at any point leaves either no object, or an object that the start-up sweep removes
# (no row names it) or that `storage check` reports as a file without a row: never a
# row without an object. An upload killed half-way leaves an incomplete multipart upload,
# which is no object (a bucket lifecycle rule can abort such uploads).
#
# The endpoint, the credentials and the region come from the standard AWS variables and
# files, read by botocore itself (AWS_ENDPOINT_URL[_S3], AWS_ACCESS_KEY_ID, ~/.aws/...).
# The calls here are synchronous (boto3, on the writer's or a worker thread); serving
# reads the bucket with aiobotocore on the event loop (`service.bucket`).
MiB = 1024 * 1024
# Uploads above this size go in parts, several at a time; each part is read from the
# partial file as it is sent, so memory holds a few parts, never a whole artifact.
MULTIPART_THRESHOLD = 16 * MiB
MULTIPART_CHUNK = 16 * MiB
UPLOAD_THREADS = 4
# Seconds: a bucket that does not answer is an outage (507/503), not a hung request.
CONNECT_TIMEOUT = 5
READ_TIMEOUT = 60
RETRIES = 3


# Where botocore found credentials and the endpoint, at INFO on each client's creation:
# one line per worker and per CLI command that says nothing an operator acts on.
SDK_CHATTER = ("botocore.credentials", "aiobotocore.credentials", "botocore.configprovider")


def quiet_sdk_logs() -> None:
    for name in SDK_CHATTER:
        logging.getLogger(name).setLevel(logging.WARNING)


def client_config(**extra: Any) -> Any:
    """botocore's Config for every S3 client of the service (sync and async)."""
    from botocore.config import Config

    return Config(
        # botocore presigns with SigV2 unless told: deprecated, refused by newer AWS
        # regions, and checked wrongly by SeaweedFS once a response-* value holds a '/'.
        signature_version="s3v4",
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": RETRIES, "mode": "standard"},
        **extra,
    )


class S3Storage(FileSystemStorage):
    """Stored artifacts are the objects `prefix + artifact/ab/cdef...` of `bucket`;
    partial files, claims and the journal live under `local_root` as on a filesystem."""

    local = False

    def __init__(
        self, local_root: Path, bucket: str, prefix: str = "", locks: Locks | None = None
    ) -> None:
        super().__init__(local_root, locks)
        self.bucket = bucket
        self.prefix = prefix
        self._client: Any = None
        self._making = threading.Lock()
        quiet_sdk_logs()

    def __repr__(self) -> str:
        return f"S3Storage(s3://{self.bucket}/{self.prefix})"

    @property
    def client(self) -> Any:
        """A boto3 S3 client, made on first use (clients are thread-safe; sessions not)."""
        with self._making:
            if self._client is None:
                import boto3

                self._client = boto3.session.Session().client("s3", config=client_config())
            return self._client

    def key_of(self, name: str) -> str:
        """The object key of storage name `name` (checked as a filesystem path would be)."""
        self.path_of(name)  # raises ValueError for a name that could leave the root
        return self.prefix + name

    # -- what differs from a filesystem --------------------------------------------------------
    def place(self, partial: Path, sha256: str) -> str:
        """Upload a verified partial file as artifact `sha256`; return its name. The
        journal entry is on disk before the upload begins; `settle` once the rows naming
        it have committed. The partial file goes once uploaded, as a rename would take
        it away on a filesystem (followers that hold it open read on)."""
        from boto3.s3.transfer import TransferConfig

        name = artifact_name(sha256)
        self.marker_of(partial, sha256).touch()
        fsync(self.tmp)  # the journal entry is on disk before the object can exist
        transfer = TransferConfig(
            multipart_threshold=MULTIPART_THRESHOLD,
            multipart_chunksize=MULTIPART_CHUNK,
            max_concurrency=UPLOAD_THREADS,
        )
        # Identical bytes under the same key, so a concurrent winner is harmless.
        try:
            self.client.upload_file(str(partial), self.bucket, self.key_of(name), Config=transfer)
        except Exception as exc:  # boto3's S3UploadFailedError, botocore's own
            # An OSError: saving reports it as storage failing (507), not as a crash.
            raise OSError(errno.EIO, f"upload failed: {_reason(exc)}") from exc
        partial.unlink()
        return name

    def exists(self, name: str) -> bool:
        """Whether the object of `name` is there."""
        from botocore.exceptions import ClientError

        with _asking("HEAD"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self.key_of(name))
            except ClientError as exc:
                if _status(exc) == 404:
                    return False
                raise
        return True

    def remove(self, name: str) -> None:
        with _asking("DELETE"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key_of(name))

    def names(self) -> Iterator[str]:
        """The storage names of every object under the prefix's artifact/."""
        with _asking("LIST"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + "artifact/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"].removeprefix(self.prefix)

    def digest(self, name: str) -> str:
        """The sha256 of an object's bytes, streamed (never held whole in memory)."""
        with _asking("GET"):
            answer = self.client.get_object(Bucket=self.bucket, Key=self.key_of(name))
            with answer["Body"] as body:
                return sha256_of_stream(body)

    def close(self) -> None:
        super().close()
        with self._making:
            if self._client is not None:
                self._client.close()
                self._client = None

    def check_writable(self) -> None:
        """Raise OSError unless downloads can be assembled here and the bucket answers."""
        super().check_writable()
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except (BotoCoreError, ClientError) as exc:
            raise OSError(
                f"bucket {self.bucket} does not answer: {exc.__class__.__name__}"
            ) from exc


def _status(exc: Any) -> int | None:
    status: int | None = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status


@contextlib.contextmanager
def _asking(what: str) -> Iterator[None]:
    """The bucket's errors as StorageUnavailable (one line for the CLI, a 503 or a clean
    failure for requests); no URL, key or credential in the text."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError) as exc:
        raise StorageUnavailable(f"the bucket did not answer a {what}: {_reason(exc)}") from exc


def _reason(exc: Exception) -> str:
    """What went wrong, without URLs or keys: an S3 error code, or the exception's class."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return _code(exc)
    cause = exc.__cause__ or exc.__context__
    if cause is not None and isinstance(getattr(cause, "response", None), dict):
        return _code(cause)
    return exc.__class__.__name__


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", "unknown"))
