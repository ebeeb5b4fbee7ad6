"""`pulp-content storage copy --to URL`: every artifact the database names, copied from the
configured storage to another one (a directory or a bucket) under the same storage name.

Each file is streamed (memory holds one block, or one part of an upload), hashed as it
is copied, and only then made visible at the destination: a file is renamed into place,
a multipart upload is completed, once its sha256 and size match its row; otherwise it is
dropped and reported. A copy that is interrupted leaves a partial file in the
destination's `tmp/` (which the service's start-up sweep removes) or an aborted upload,
never a wrong file under an artifact's name; running it again skips what is there with
the right size. The database is not changed: the user switches `storage_url` after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import os
import signal
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

from django.db.models import Count, Sum

from pulp_content.service.config import Settings, check_storage_url
from pulp_content.service.errors import InvalidInput, StorageError, StorageUnavailable
from pulp_content.service.models import Artifact
from pulp_content.service.storage import (
    DIGEST_BLOCK,
    PARTIAL_SUFFIX,
    TMP_MODE,
    client_config,
    fsync,
    quiet_sdk_logs,
)

MiB = 1024 * 1024
# One upload part; S3 wants parts of 5 MiB or more (the last excepted) and at most 10,000
# of them, so a larger artifact gets larger parts.
PART_SIZE = 8 * MiB
MAX_PARTS = 9_000
ROWS_PER_QUERY = 1_000

MISSING = "missing at the source"
UNREADABLE = "unreadable at the source"
WRONG_BYTES = "wrong bytes"

BUCKET_CODES = {"404": "NoSuchBucket", "403": "AccessDenied"}

Advance = Callable[[int], None]  # bytes done, for a progress bar


@dataclass(frozen=True)
class Row:
    """What the copy needs of an Artifact row."""

    file: str
    sha256: str
    size: int


@dataclass(frozen=True)
class CopyProblem:
    """An artifact that was not copied, and why; nothing was left at the destination."""

    kind: str
    name: str
    detail: str = ""

    def line(self) -> str:
        return f"{self.kind}: {self.name}" + (f" ({self.detail})" if self.detail else "")


@dataclass
class Tally:
    """What a copy did so far (an interrupted one included)."""

    destination: str
    copied: int = 0
    copied_bytes: int = 0
    present: int = 0  # at the destination already, with the right size: skipped
    verified: int = 0  # of those, re-read and found right (--verify-existing)
    replaced: int = 0  # at the destination with the wrong bytes: copied again
    problems: list[CopyProblem] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["problems"] = [asdict(problem) for problem in self.problems]
        return doc


class Unreadable(Exception):
    """The source has no file for a row, or cannot read it: a problem of that row alone."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(kind, detail)
        self.kind = kind
        self.detail = detail


class Side(Protocol):
    """A storage as the copy sees it: read a file, learn its size, write one verified."""

    url: str

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]: ...
    def size_of(self, name: str) -> int | None: ...
    def write_row(self, row: Row, source: Digesting) -> str | None: ...
    def check_writable(self) -> None: ...
    def close(self) -> None: ...


class Digesting:
    """A source file read through a running sha256 and a byte count."""

    def __init__(self, handle: IO[bytes], advance: Advance) -> None:
        self.handle = handle
        self.advance = advance
        self.hash = hashlib.sha256()
        self.size = 0

    def read(self, n: int) -> bytes:
        """Up to `n` bytes: fewer only at the end (a socket may answer short reads)."""
        blocks = []
        wanted = n
        while wanted > 0 and (block := self._read(min(wanted, DIGEST_BLOCK))):
            blocks.append(block)
            wanted -= len(block)
        data = b"".join(blocks)
        self.hash.update(data)
        self.size += len(data)
        self.advance(len(data))
        return data

    def _read(self, n: int) -> bytes:
        try:
            return self.handle.read(n)
        except OSError as exc:  # a disk's I/O error; a bucket's errors are botocore's
            raise Unreadable(UNREADABLE, exc.strerror or str(exc)) from None

    def mismatch(self, row: Row) -> str | None:
        """Why the bytes read are not the row's; None: they are."""
        if self.size != row.size:
            return f"{self.size} bytes, the row says {row.size}"
        actual = self.hash.hexdigest()
        return None if actual == row.sha256 else f"the bytes hash to {actual}"


def _parts(name: str) -> list[str]:
    """The segments of a storage name (from a row); refuses one that could leave the root."""
    parts = name.split("/")
    if name.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\x00" in name:
        raise ValueError(f"storage name outside the storage root: {name!r}")
    return parts


# -- a directory ---------------------------------------------------------------------------------
class FileSide:
    """Artifacts under `root/artifact/`; a copy is assembled in `root/tmp/` (the partial
    files' place, swept at the service's start) and renamed into place once verified."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root.resolve()
        self.tmp = self.root / "tmp"
        self.url = url

    def path_of(self, name: str) -> Path:
        return self.root.joinpath(*_parts(name))

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        try:
            return open(self.path_of(name), "rb")
        except FileNotFoundError:
            raise Unreadable(MISSING) from None
        except OSError as exc:
            raise Unreadable(UNREADABLE, exc.strerror or str(exc)) from None

    def size_of(self, name: str) -> int | None:
        try:
            return self.path_of(name).stat().st_size
        except FileNotFoundError:
            return None

    def write_row(self, row: Row, source: Digesting) -> str | None:
        """Copy `source` into place as `row.file`; why not (nothing placed), or None."""
        partial = self.tmp / f"copy-{uuid.uuid4().hex}{PARTIAL_SUFFIX}"
        try:
            with _writing(self.root):
                out = open(partial, "wb")  # noqa: SIM115 - closed below, errors apart
            with out:
                while block := source.read(DIGEST_BLOCK):
                    with _writing(self.root):  # not around the read: the source's errors
                        out.write(block)
                with _writing(self.root):
                    out.flush()
                    os.fsync(out.fileno())
            wrong = source.mismatch(row)
            if wrong is not None:
                return wrong
            target = self.path_of(row.file)
            with _writing(self.root):
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, target)
                fsync(target.parent)
            return None
        finally:
            partial.unlink(missing_ok=True)

    def check_writable(self) -> None:
        with _writing(self.root):
            self.tmp.mkdir(mode=TMP_MODE, parents=True, exist_ok=True)
            if not os.access(self.tmp, os.W_OK | os.X_OK):
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    def close(self) -> None:
        pass


@contextlib.contextmanager
def _writing(root: Path) -> Iterator[None]:
    """The destination's errors (full disk, no permission) as one line for the CLI."""
    try:
        yield
    except OSError as exc:
        raise StorageError(f"cannot write to {root}: {exc.strerror or exc}") from None


# -- a bucket ------------------------------------------------------------------------------------
class BucketSide:
    """The objects `prefix + artifact/ab/cdef...` of `bucket`; a copy is a multipart upload
    completed (or one PUT made) only once the bytes are verified, aborted otherwise."""

    def __init__(self, bucket: str, prefix: str, url: str) -> None:
        import boto3

        quiet_sdk_logs()
        self.bucket = bucket
        self.prefix = prefix
        self.url = url
        self.client: Any = boto3.session.Session().client("s3", config=client_config())
        self._sizes: dict[str, int] | None = None

    def key_of(self, name: str) -> str:
        return self.prefix + "/".join(_parts(name))

    def open(self, name: str) -> contextlib.AbstractContextManager[IO[bytes]]:
        from botocore.exceptions import ClientError

        with _asking(self.bucket, "GET"):
            try:
                answer = self.client.get_object(Bucket=self.bucket, Key=self.key_of(name))
            except ClientError as exc:
                if _status(exc) == 404:
                    raise Unreadable(MISSING) from None
                raise
        body: contextlib.AbstractContextManager[IO[bytes]] = answer["Body"]
        return _reading(self.bucket, body)

    def size_of(self, name: str) -> int | None:
        """From one listing of the prefix, made on first use (a HEAD per artifact would
        be as many requests as the copy makes)."""
        if self._sizes is None:
            self._sizes = dict(self._listing())
        return self._sizes.get(name)

    def _listing(self) -> Iterator[tuple[str, int]]:
        with _asking(self.bucket, "LIST"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self.prefix + "artifact/"
            )
            for page in pages:
                for item in page.get("Contents", []):
                    yield item["Key"].removeprefix(self.prefix), int(item["Size"])

    def write_row(self, row: Row, source: Digesting) -> str | None:
        """Upload `source` as `row.file`; why not (nothing uploaded), or None."""
        part_size = max(PART_SIZE, -(-row.size // MAX_PARTS))
        key = self.key_of(row.file)
        first = source.read(part_size)
        if len(first) < part_size:  # the whole file: one PUT, made once it checks out
            wrong = source.mismatch(row)
            if wrong is None:
                with _asking(self.bucket, "PUT"), _whole_request():
                    self.client.put_object(Bucket=self.bucket, Key=key, Body=first)
            return wrong
        return self._multipart(row, key, source, first, part_size)

    def _multipart(
        self, row: Row, key: str, source: Digesting, first: bytes, part_size: int
    ) -> str | None:
        with _asking(self.bucket, "multipart upload"), _whole_request():
            upload = self.client.create_multipart_upload(Bucket=self.bucket, Key=key)
        done = False
        ids = {"Bucket": self.bucket, "Key": key, "UploadId": upload["UploadId"]}
        try:
            parts: list[dict[str, Any]] = []
            block = first
            while block:
                number = len(parts) + 1
                with _asking(self.bucket, "part upload"), _whole_request():
                    sent = self.client.upload_part(Body=block, PartNumber=number, **ids)
                parts.append({"ETag": sent["ETag"], "PartNumber": number})
                block = source.read(part_size)
            wrong = source.mismatch(row)
            if wrong is None:
                with _asking(self.bucket, "multipart upload"), _whole_request():
                    self.client.complete_multipart_upload(MultipartUpload={"Parts": parts}, **ids)
                done = True
            return wrong
        finally:
            if not done:  # the parts go; the object never existed
                with contextlib.suppress(Exception):
                    self.client.abort_multipart_upload(**ids)

    def check_writable(self) -> None:
        with _asking(self.bucket, "HEAD"):
            self.client.head_bucket(Bucket=self.bucket)

    def close(self) -> None:
        self.client.close()


@contextlib.contextmanager
def _reading(
    bucket: str, body: contextlib.AbstractContextManager[IO[bytes]]
) -> Iterator[IO[bytes]]:
    with _asking(bucket, "GET"), body as handle:
        yield handle


@contextlib.contextmanager
def _whole_request() -> Iterator[None]:
    """Ctrl-C during an upload request takes effect once it is answered (a part: seconds
    at most); a second Ctrl-C at once. A request cut off half-way leaves its connection
    open until the process exits, and the store may hold the upload, and its abort, for
    the rest of the part (SeaweedFS does)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def later(signum: int, frame: Any) -> None:
        caught.append(signum)
        signal.signal(signal.SIGINT, previous)  # the second one is not deferred

    signal.signal(signal.SIGINT, later)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if caught and callable(previous):
        previous(signal.SIGINT, None)  # Python's own handler raises KeyboardInterrupt


def _status(exc: Any) -> int | None:
    status: int | None = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return status


@contextlib.contextmanager
def _asking(bucket: str, what: str) -> Iterator[None]:
    """The bucket's errors as one line: an S3 error code or the exception's class (no
    URL, key or credential)."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", "unknown"))
        reason = BUCKET_CODES.get(code, code)  # a HEAD's answer has no body, only a status
        raise StorageUnavailable(f"bucket {bucket}: {what} failed: {reason}") from None
    except BotoCoreError as exc:
        reason = exc.__class__.__name__  # EndpointConnectionError, NoCredentialsError, ...
        raise StorageUnavailable(f"bucket {bucket}: {what} failed: {reason}") from None


# -- the copy ------------------------------------------------------------------------------------
def side_of(settings: Settings) -> FileSide | BucketSide:
    """The storage of `settings`, for copying."""
    if settings.s3_location is not None:
        bucket, prefix = settings.s3_location
        return BucketSide(bucket, prefix, settings.storage_url or "")
    return FileSide(settings.storage_root, settings.storage_url or settings.storage_root.as_uri())


def destination_settings(settings: Settings, url: str) -> Settings:
    """`settings` with storage at `url` (checked as PULP_CONTENT_STORAGE_URL is), which
    must be another storage than the configured one."""
    to = dataclasses.replace(settings, storage_url=check_storage_url(url, "--to"))
    if _location(to) == _location(settings):
        raise InvalidInput(f"--to {url} is the configured storage itself; copy elsewhere")
    return to


def _location(settings: Settings) -> tuple[str, str]:
    if settings.s3_location is not None:
        return settings.s3_location
    return "", str(settings.storage_root.resolve())


def totals() -> tuple[int, int]:
    """How many artifacts there are, and their bytes (for the progress bar)."""
    found = Artifact.objects.aggregate(count=Count("pk"), size=Sum("size"))
    return int(found["count"] or 0), int(found["size"] or 0)


def rows() -> Iterator[Row]:
    """Every Artifact row, in id order, a page at a time (no cursor held for hours)."""
    last = 0
    while True:
        page = list(
            Artifact.objects.filter(pk__gt=last)
            .order_by("pk")
            .values_list("pk", "file", "sha256", "size")[:ROWS_PER_QUERY]
        )
        if not page:
            return
        for _, file, sha256, size in page:
            yield Row(file, sha256, size)
        last = page[-1][0]


class Copier:
    """Copies rows one at a time from `source` to `target`, keeping the tally."""

    def __init__(
        self, source: Side, target: Side, tally: Tally, verify_existing: bool, advance: Advance
    ) -> None:
        self.source = source
        self.target = target
        self.tally = tally
        self.verify_existing = verify_existing
        self.advance = advance

    def copy(self, row: Row) -> None:
        there = self.target.size_of(row.file)
        if there == row.size:
            if not self.verify_existing:
                self.tally.present += 1
                self.advance(row.size)
                return
            if self._intact(row):
                self.tally.present += 1
                self.tally.verified += 1
                return
            self.tally.replaced += 1
        self._copy(row)

    def _intact(self, row: Row) -> bool:
        """Whether the destination's file has the row's bytes (read through)."""
        try:
            with self.target.open(row.file) as handle:
                reader = Digesting(handle, self.advance)
                while reader.read(DIGEST_BLOCK):
                    pass
        except Unreadable:  # gone since it was listed, or unreadable: copied again
            return False
        return reader.mismatch(row) is None

    def _copy(self, row: Row) -> None:
        done = 0

        def advance(n: int) -> None:
            nonlocal done
            done += n
            self.advance(n)

        try:
            with self.source.open(row.file) as handle:
                wrong = self.target.write_row(row, Digesting(handle, advance))
        except Unreadable as why:
            self.tally.problems.append(CopyProblem(why.kind, row.file, why.detail))
            self.advance(max(row.size - done, 0))
            return
        if wrong is not None:
            self.tally.problems.append(CopyProblem(WRONG_BYTES, row.file, wrong))
            self.advance(max(row.size - done, 0))
            return
        self.tally.copied += 1
        self.tally.copied_bytes += row.size


def copy_storage(
    settings: Settings,
    destination: Settings,
    tally: Tally,
    verify_existing: bool = False,
    advance: Advance = lambda n: None,
) -> Tally:
    """Copy every artifact of `settings`' storage to `destination`'s; `tally` is filled in
    as it goes (so an interrupted copy still says what it did)."""
    source, target = side_of(settings), side_of(destination)
    try:
        target.check_writable()
        copier = Copier(source, target, tally, verify_existing, advance)
        for row in rows():
            copier.copy(row)
    finally:
        source.close()
        target.close()
    return tally
