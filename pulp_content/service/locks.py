"""Who writes which partial file: a claim on it, seen by every process that shares the
storage, so one process downloads an artifact and the others follow its file, and the
start-up sweep removes only files nobody writes any more.

Two kinds, by database:
- `FileLocks` (SQLite, one host): an flock on `<name>.lock` beside the partial file.
- `AdvisoryLocks` (PostgreSQL): a session-level advisory lock per partial file name in
  the shared database, so the rule holds across hosts that share the database and the
  storage whatever their filesystem makes of flock.

A partial file is `<name>.partial`, or `<name>-<n>.partial` for the members of a batch,
which share the claim on `<name>`; what else sits beside it (`<name>.<sha256>.placing`,
the journal of a save, see `storage.place`) shares it too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from pulp_content.service import queries
from pulp_content.service.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"


def owner_of(partial: Path) -> str:
    """The name whose claim covers `partial` (or a file of its download beside it)."""
    return partial.name.split(".")[0].split("-")[0]


def lock_of(partial: Path) -> Path:
    """The lock file whose holder is writing `partial`: `<name>.lock` for `<name>.partial`,
    and for every `<name>-<n>.partial` of a batch."""
    return partial.with_name(owner_of(partial) + ".lock")


class Claim(Protocol):
    def release(self) -> None: ...


class Locks(Protocol):
    def claim(self, partial: Path) -> Claim | None:
        """The claim on `partial`, or None when another holder (in this process or any
        other) has it."""

    def held(self, partial: Path) -> bool:
        """Whether anyone holds the claim on `partial` now."""

    def close(self) -> None: ...


class FileLock:
    """An exclusive, non-blocking flock on `path`; the file goes when the lock does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        while True:
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            # A holder removes the file as it lets go: if we opened it just before, our
            # lock is on a file nobody else will look at. Try again with the one at `path`.
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd = fd
                return True
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def release(self) -> None:
        if self._fd is None:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None


def held_elsewhere(path: Path) -> bool:
    """Whether another open file (this process's or another's) holds the lock now."""
    probe = FileLock(path)
    if not path.exists():
        return False
    if probe.try_acquire():
        fcntl.flock(probe._fd, fcntl.LOCK_UN)  # type: ignore[arg-type]
        os.close(probe._fd)  # type: ignore[arg-type]
        return False
    return True


class FileLocks:
    """Claims as flocks on the storage filesystem (flock conflicts between open files,
    so two claims in one process exclude each other too)."""

    def claim(self, partial: Path) -> Claim | None:
        lock = FileLock(lock_of(partial))
        return lock if lock.try_acquire() else None

    def held(self, partial: Path) -> bool:
        return held_elsewhere(lock_of(partial))

    def close(self) -> None:
        pass


class AdvisoryClaim:
    def __init__(self, locks: AdvisoryLocks, key: int) -> None:
        self._locks: AdvisoryLocks | None = locks
        self.key = key

    def release(self) -> None:
        if self._locks is not None:
            self._locks.unlock(self.key)
            self._locks = None


class AdvisoryLocks:
    """Claims as PostgreSQL advisory locks, on a connection of their own (a session lock
    lives as long as the session that took it, so Django's connections, which come and
    go with threads, will not do).

    A session may take its own advisory lock twice, so claims this process holds are
    also kept here: a second claim on the same name fails, as an flock would. If the
    connection is lost, PostgreSQL has dropped every lock it held; this is logged, and
    the next call connects again.
    """

    NAMESPACE = b"pulp-content partial:"

    def __init__(self, connect: Callable[[], Any]) -> None:
        self._connect = connect
        self._conn: Any = None
        self._mutex = threading.Lock()  # one connection, used from several threads
        self._held: set[int] = set()

    @classmethod
    def key(cls, partial: Path) -> int:
        """The advisory lock key (a signed 64-bit integer) for a partial file's name."""
        digest = hashlib.sha256(cls.NAMESPACE + owner_of(partial).encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _ask(self, sql: str, key: int, reconnect: bool = True) -> bool:
        """Run one lock statement; raises DatabaseUnavailable when the database does not
        answer (on a lost connection it connects again once, unless told not to)."""
        import psycopg2

        queries.note(sql)  # a round trip like any other: the request's count shows it
        with self._mutex:
            for attempt in (1, 2):
                try:
                    if self._conn is None or self._conn.closed:
                        self._conn = self._connect()
                        self._conn.autocommit = True
                    with self._conn.cursor() as cur:
                        cur.execute(sql, (key,))
                        return bool(cur.fetchone()[0])
                except (psycopg2.OperationalError, psycopg2.InterfaceError) as exc:
                    self._lost()
                    if attempt == 2 or not reconnect:
                        first = (str(exc).strip().splitlines() or ["no answer"])[0]
                        raise DatabaseUnavailable(f"database unavailable: {first}") from None
        raise AssertionError("unreachable")

    def _lost(self) -> None:
        """The session is gone, and with it every lock it held."""
        if self._held:
            log.warning("lost the database connection holding %d download claims", len(self._held))
            self._held.clear()
        if self._conn is not None:
            self._conn.close()
        self._conn = None

    def claim(self, partial: Path) -> Claim | None:
        key = self.key(partial)
        if key in self._held or not self._ask("SELECT pg_try_advisory_lock(%s)", key):
            return None
        self._held.add(key)
        return AdvisoryClaim(self, key)

    def unlock(self, key: int) -> None:
        """Drop a claim; never raises (a lost session has dropped it already)."""
        if key not in self._held:
            return
        # A lost session has dropped the lock with it (logged by _lost).
        with contextlib.suppress(DatabaseUnavailable):
            self._ask("SELECT pg_advisory_unlock(%s)", key, reconnect=False)
        self._held.discard(key)

    def held(self, partial: Path) -> bool:
        key = self.key(partial)
        if key in self._held:
            return True
        if self._ask("SELECT pg_try_advisory_lock(%s)", key):
            self._ask("SELECT pg_advisory_unlock(%s)", key)
            return False
        return True

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()  # and with the session, every lock it held
                self._conn = None
            self._held.clear()


def locks_for(database_url: str) -> Locks:
    """Advisory locks in the database for PostgreSQL; flocks on the storage for SQLite."""
    if database_url.startswith("sqlite:"):
        return FileLocks()
    from pulp_content.service.config import connect_params

    params = connect_params(database_url)

    def connect() -> Any:
        import psycopg2

        return psycopg2.connect(**params, application_name="pulp-content locks")

    return AdvisoryLocks(connect)
