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

Both kinds do their work on a thread of their own (`LockThread`), one call at a time and
in the order asked: a coroutine awaits `aclaim`/`aheld` and the event loop goes on
serving meanwhile (an advisory lock is a database round trip, with a connect timeout of
seconds when the database is away); `release` never waits, and still runs before any
claim asked after it. `claim`/`held` wait for the answer, for commands and start-up.
`aclaim` also does the holder's first work with the claim (creating its partial file) in
the same turn on that thread: one hop off the event loop for both, not one each.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import hashlib
import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pulp_content.service import queries
from pulp_content.service.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
PARTIAL_SUFFIX = ".partial"
T = TypeVar("T")
UNLOCK = "SELECT pg_advisory_unlock(%s)"
APPLICATION = "pulp-content locks"  # the application_name of their sessions
# A session of claims says where its host is reached (service_peerhost, migration 0011),
# by its backend's pid and start: a pid is used again once its session is gone, so the
# row an earlier session of the same pid left goes first (each session touches only its
# own pid's row: sessions connecting at once never wait for each other). The table holds
# at most one row per pid.
REGISTER = (
    "DELETE FROM service_peerhost WHERE backend_pid = pg_backend_pid();"
    " INSERT INTO service_peerhost (backend_pid, backend_start, url)"
    " SELECT pid, backend_start, %s FROM pg_stat_activity WHERE pid = pg_backend_pid()"
)
# Where the session holding an advisory lock said its host is reached, by the lock's key
# (see `AdvisoryLocks._holder`).
HOLDER = (
    "SELECT p.url FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " JOIN service_peerhost p ON p.backend_pid = a.pid AND p.backend_start = a.backend_start"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s"
    " AND l.objsubid = 1 AND l.database = (SELECT oid FROM pg_database"
    " WHERE datname = current_database())"
)


def owner_of(partial: Path) -> str:
    """The name whose claim covers `partial` (or a file of its download beside it)."""
    return partial.name.split(".")[0].split("-")[0]


def lock_of(partial: Path) -> Path:
    """The lock file whose holder is writing `partial`: `<name>.lock` for `<name>.partial`,
    and for every `<name>-<n>.partial` of a batch."""
    return partial.with_name(owner_of(partial) + ".lock")


class Claim(Protocol):
    def release(self) -> None:
        """Let go; never waits (the locks' thread does it, before any later claim)."""


class Locks(Protocol):
    def claim(self, partial: Path) -> Claim | None:
        """The claim on `partial`, or None when another holder (in this process or any
        other) has it. Waits for the answer: not for the event loop (see `aclaim`)."""

    def held(self, partial: Path) -> bool:
        """Whether anyone holds the claim on `partial` now (waits, as `claim` does)."""

    async def aclaim(self, partial: Path, then: Callable[[], T]) -> tuple[Claim, T] | None:
        """`claim`, with the event loop free meanwhile, and `then()` run right after it,
        on the same thread, when the claim was taken. If `then` raises, the claim goes."""

    async def aheld(self, partial: Path) -> bool:
        """`held`, with the event loop free meanwhile."""

    async def aholder(self, partial: Path) -> str | None:
        """Where the holder of the claim on `partial` can be reached (its peer URL), when
        it is another host that said so; None otherwise (nobody holds it, or no address)."""

    def flush(self) -> None:
        """Wait until the releases asked for so far are done."""

    def close(self) -> None:
        """Drop every claim left, after the releases already asked for."""


class LockThread:
    """Lock work on one thread, one call at a time, in the order asked; one per process
    (`lock_thread`), whatever locks use it.

    The order is what makes a release that does not wait safe: a claim or a question
    asked after it, of any locks of this process, runs after it. The caller's context
    goes along, so a request's statement count sees the lock statements it caused."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="pulp-content-locks")
        self.pid = os.getpid()

    def _submit(self, work: Callable[..., T], *args: Any) -> Future[T]:
        context = contextvars.copy_context()
        return self._executor.submit(context.run, work, *args)

    def wait(self, work: Callable[..., T], *args: Any) -> T:
        return self._submit(work, *args).result()

    async def run(self, work: Callable[..., T], *args: Any) -> T:
        return await asyncio.wrap_future(self._submit(work, *args))

    async def run_claim(
        self, work: Callable[[Path], Claim | None], partial: Path, then: Callable[[], T]
    ) -> tuple[Claim, T] | None:
        """A claim taken on the thread, and `then` done with it there; if the caller is
        cancelled meanwhile, the claim it would have got is dropped (and what `then` made,
        closed), never left held by nobody."""
        future = self._submit(_claim_then, work, partial, then)
        try:
            return await asyncio.wrap_future(future)
        except asyncio.CancelledError:
            future.add_done_callback(_release_unwanted)
            raise

    def later(self, work: Callable[..., object], *args: Any) -> None:
        """Run `work` after everything asked before it; do not wait for it."""
        try:
            self._submit(work, *args)
        except RuntimeError:  # interpreter exit: nothing runs there any more
            work(*args)

    def drain(self) -> None:
        """Wait until everything asked so far (the releases too) has run."""
        self.wait(_nothing)


def _nothing() -> None:
    pass


_thread: LockThread | None = None
_thread_made = threading.Lock()


def lock_thread() -> LockThread:
    """This process's lock thread (made on first use; a forked child makes its own)."""
    global _thread
    with _thread_made:
        if _thread is None or _thread.pid != os.getpid():
            _thread = LockThread()
        return _thread


def _claim_then(
    work: Callable[[Path], Claim | None], partial: Path, then: Callable[[], T]
) -> tuple[Claim, T] | None:
    claim = work(partial)
    if claim is None:
        return None
    try:
        return claim, then()
    except BaseException:
        claim.release()  # runs after this call: the thread's next job
        raise


def _release_unwanted(future: Future[tuple[Claim, Any] | None]) -> None:
    if future.cancelled() or future.exception() is not None:
        return
    claimed = future.result()
    if claimed is not None:
        claim, made = claimed
        with contextlib.suppress(OSError):
            getattr(made, "close", _nothing)()
        claim.release()


class FileLock:
    """An exclusive, non-blocking flock on `path`; the file goes when the lock does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        while True:
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            except FileNotFoundError:
                # Its directory went (storage's tmp, removed by hand): made again as the
                # storage makes it, for the owner only.
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
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


class FileClaim:
    def __init__(self, lock: FileLock, thread: LockThread) -> None:
        self._lock = lock
        self._thread = thread

    def release(self) -> None:
        self._thread.later(self._lock.release)


class FileLocks:
    """Claims as flocks on the storage filesystem (flock conflicts between open files,
    so two claims in one process exclude each other too)."""

    def __init__(self) -> None:
        self._thread = lock_thread()

    def _claim(self, partial: Path) -> Claim | None:
        lock = FileLock(lock_of(partial))
        return FileClaim(lock, self._thread) if lock.try_acquire() else None

    def _held(self, partial: Path) -> bool:
        return held_elsewhere(lock_of(partial))

    def claim(self, partial: Path) -> Claim | None:
        return self._thread.wait(self._claim, partial)

    def held(self, partial: Path) -> bool:
        return self._thread.wait(self._held, partial)

    async def aclaim(self, partial: Path, then: Callable[[], T]) -> tuple[Claim, T] | None:
        return await self._thread.run_claim(self._claim, partial, then)

    async def aheld(self, partial: Path) -> bool:
        return await self._thread.run(self._held, partial)

    async def aholder(self, partial: Path) -> str | None:
        return None  # one host: its processes read each other's partial files

    def flush(self) -> None:
        self._thread.drain()

    def close(self) -> None:
        self._thread.drain()


class AdvisoryClaim:
    def __init__(self, locks: AdvisoryLocks, key: int) -> None:
        self._locks: AdvisoryLocks | None = locks
        self.key = key

    def release(self) -> None:
        if self._locks is not None:
            self._locks.unlock_later(self.key)
            self._locks = None


class AdvisoryLocks:
    """Claims as PostgreSQL advisory locks, on a connection of their own (a session lock
    lives as long as the session that took it, so Django's connections, which come and
    go with threads, will not do). The connection is used on the `LockThread` only.

    A session may take its own advisory lock twice, so claims this process holds are
    also kept here: a second claim on the same name fails, as an flock would. If the
    connection is lost, PostgreSQL has dropped every lock it held; this is logged, and
    the next call connects again.
    """

    NAMESPACE = b"pulp-content partial:"

    def __init__(self, connect: Callable[[], Any], peer_url: str | None = None) -> None:
        self._connect = connect
        self.peer_url = peer_url  # said by the session when it connects: see `_register`
        self._conn: Any = None
        self._thread = lock_thread()
        self._held: set[int] = set()

    @classmethod
    def key(cls, partial: Path) -> int:
        """The advisory lock key (a signed 64-bit integer) for a partial file's name."""
        digest = hashlib.sha256(cls.NAMESPACE + owner_of(partial).encode()).digest()
        return int.from_bytes(digest[:8], "big", signed=True)

    def _ask(self, sql: str, key: int, reconnect: bool = True, noted: bool = False) -> bool:
        """Run one lock statement; raises DatabaseUnavailable when the database does not
        answer (on a lost connection it connects again once, unless told not to)."""
        row = self._row(sql, (key,), reconnect, noted)
        return bool(row and row[0])

    def _row(
        self, sql: str, params: tuple[int, ...], reconnect: bool = True, noted: bool = False
    ) -> tuple[Any, ...] | None:
        """One statement on the locks' session, and the first row of its answer."""
        import psycopg2

        if not noted:
            queries.note(sql)  # a round trip like any other: the request's count shows it
        for attempt in (1, 2):
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = self._connect()
                    self._conn.autocommit = True
                    self._register()
                with self._conn.cursor() as cur:
                    cur.execute(sql, params)
                    row = cur.fetchone()
                    return tuple(row) if row is not None else None
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

    # On the lock thread:
    def _claim(self, partial: Path) -> Claim | None:
        key = self.key(partial)
        if key in self._held or not self._ask("SELECT pg_try_advisory_lock(%s)", key):
            return None
        self._held.add(key)
        return AdvisoryClaim(self, key)

    def _unlock(self, key: int) -> None:
        """Drop a claim; never raises (a lost session has dropped it already)."""
        if key not in self._held:
            return
        # A lost session has dropped the lock with it (logged by _lost).
        with contextlib.suppress(DatabaseUnavailable):
            self._ask(UNLOCK, key, reconnect=False, noted=True)
        self._held.discard(key)

    def _held_now(self, partial: Path) -> bool:
        key = self.key(partial)
        if key in self._held:
            return True
        if self._ask("SELECT pg_try_advisory_lock(%s)", key):
            self._ask(UNLOCK, key)
            return False
        return True

    def _register(self) -> None:
        """A new session: say where this host is reached, so that another host finding
        a claim of this session held reads the download here (`_holder`). Without the
        table (a database not migrated yet), other hosts download for themselves."""
        import psycopg2

        if not self.peer_url:
            return
        queries.note(REGISTER, background=True)  # once a session, not for a request
        try:
            with self._conn.cursor() as cur:
                cur.execute(REGISTER, (self.peer_url,))
        except psycopg2.ProgrammingError as exc:
            first = (str(exc).strip().splitlines() or ["?"])[0]
            log.warning("other hosts will not read this one's downloads: %s", first)

    def _holder(self, partial: Path) -> str | None:
        """Where the host of the session holding the lock on `partial` is reached, as
        that session said (`_register`): PostgreSQL itself says who holds it, for as long
        as it does."""
        key = self.key(partial)
        if key in self._held:
            return None  # this process
        # pg_locks shows a bigint advisory key as two oids, high and low half.
        unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
        row = self._row(HOLDER, (unsigned >> 32, unsigned & 0xFFFF_FFFF))
        holder = str(row[0]) if row and row[0] else None
        return holder if holder != self.peer_url else None

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn.close()  # and with the session, every lock it held
            self._conn = None
        self._held.clear()

    # From anywhere:
    def claim(self, partial: Path) -> Claim | None:
        return self._thread.wait(self._claim, partial)

    def held(self, partial: Path) -> bool:
        return self._thread.wait(self._held_now, partial)

    async def aclaim(self, partial: Path, then: Callable[[], T]) -> tuple[Claim, T] | None:
        return await self._thread.run_claim(self._claim, partial, then)

    async def aheld(self, partial: Path) -> bool:
        return await self._thread.run(self._held_now, partial)

    async def aholder(self, partial: Path) -> str | None:
        return await self._thread.run(self._holder, partial)

    def flush(self) -> None:
        self._thread.drain()

    def unlock_later(self, key: int) -> None:
        # Counted now, in the caller's count: the statement goes after the caller is done.
        queries.note(UNLOCK)
        self._thread.later(self._unlock, key)

    def close(self) -> None:
        self._thread.wait(self._disconnect)


def locks_for(database_url: str, peer_url: str | None = None) -> Locks:
    """Advisory locks in the database for PostgreSQL; flocks on the storage for SQLite.
    On PostgreSQL, the claims' session says `peer_url`, where this host is reached:
    another host that finds a claim held reads the download there."""
    if database_url.startswith("sqlite:"):
        return FileLocks()
    from pulp_content.service.config import connect_params

    params = connect_params(database_url)

    def connect() -> Any:
        import psycopg2

        return psycopg2.connect(**params, application_name=APPLICATION)

    return AdvisoryLocks(connect, peer_url)
