"""Tell each worker's resolution cache what changed in the database, as it commits.

Triggers (migration 0006) bump a generation in the same transaction as every change that
can alter an answer, whoever writes: the CLI, a sync, the service's own saves, another
host. Each worker follows it on a thread of its own, with a connection of its own:

- PostgreSQL: `LISTEN pulp_content_changes`; each commit's notification says which
  generation it made and what it concerns, and is applied at once (milliseconds). The
  generation is also read every `FALLBACK_POLL` seconds, so a notification that never
  came is made up for within that; a lost connection turns the cache off (it cannot
  vouch for anything) until it is back.
- SQLite (one host): the generation is read every `SQLITE_POLL` seconds; only when it
  moved are the changes read.

What changed is "everything" or "the state of these content artifacts" (`Changes`), read
from `pulp_content_change`; a reader that fell too far behind drops everything. The
thread never touches the cache: it hands changes to the event loop, which owns it.
Statements sent here are counted as background statements (`queries.note`).
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from pulp_content.service import queries
from pulp_content.service.cache import ResolutionCache

log = logging.getLogger(__name__)
CHANNEL = "pulp_content_changes"
SQLITE_POLL = 0.005
FALLBACK_POLL = 0.5
RECONNECT = 0.2

_GENERATION = "SELECT value FROM pulp_content_generation WHERE id = 1"
_CHANGES = (
    "SELECT generation, content_artifact_id FROM pulp_content_change "
    "WHERE generation > {p} AND generation <= {p}"
)


@dataclass(frozen=True)
class Changes:
    """What committed after a generation: everything, or these content artifacts' states."""

    everything: bool
    content_artifacts: frozenset[int] = frozenset()


EVERYTHING = Changes(True)


def apply(cache: ResolutionCache, changes: Changes) -> None:
    """Drop what `changes` may have made wrong (on the event loop)."""
    if changes.everything:
        cache.clear()
    else:
        cache.drop_states(changes.content_artifacts)


def read_changes(cursor: Any, last: int, placeholder: str) -> tuple[int, Changes | None]:
    """The generation now, and what changed after `last` (None: nothing)."""
    queries.note(_GENERATION, background=True)
    cursor.execute(_GENERATION)
    now = int(cursor.fetchone()[0])
    if now == last:
        return now, None
    if now < last:
        return now, EVERYTHING  # another database behind the same name
    sql = _CHANGES.format(p=placeholder)
    queries.note(sql, background=True)
    cursor.execute(sql, (last, now))
    rows = cursor.fetchall()
    if len(rows) != now - last:
        return now, EVERYTHING  # a change of everything in between, or fell behind
    return now, Changes(False, frozenset(int(ca) for _, ca in rows))


def parse_notification(payload: str) -> tuple[int, int | None]:
    """`'<generation> <content artifact id>'`, or `'<generation> *'` for everything."""
    generation, _, scope = payload.partition(" ")
    return int(generation), None if scope == "*" else int(scope)


class Report(Protocol):
    def changed(self, changes: Changes) -> None: ...

    def live(self, live: bool) -> None: ...


class Watcher(threading.Thread):
    """Follows the generation on its own thread and connection until `stop`."""

    def __init__(self, report: Report) -> None:
        super().__init__(name="pulp-content-invalidation", daemon=True)
        self.report = report
        self._stopping = threading.Event()
        # Written to by `stop`, so a thread waiting on its connection wakes at once.
        self._wake, self._waker = socket.socketpair()
        self.last: int | None = None
        self._failing = False  # said so in the log already

    def stop(self) -> None:
        self._stopping.set()
        self._waker.send(b"x")
        self.join(timeout=5)
        self._wake.close()
        self._waker.close()

    def run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.follow()
            except Exception as exc:  # the database went away: reconnect
                if self.last is not None or not self._failing:
                    log.warning("resolution cache off: cannot follow changes (%r)", exc)
                self._failing = True
                self.last = None
                self.report.live(False)
                self._stopping.wait(RECONNECT)

    def follow(self) -> None:
        raise NotImplementedError

    def _went_live(self, cursor: Any, placeholder: str) -> None:
        """Start from the generation now: the cache holds nothing older (it was off)."""
        queries.note(_GENERATION, background=True)
        cursor.execute(_GENERATION)
        self.last = int(cursor.fetchone()[0])
        if self._failing:
            log.warning("resolution cache on again: following changes")
            self._failing = False
        self.report.live(True)

    def _catch_up(self, cursor: Any, placeholder: str) -> None:
        assert self.last is not None
        now, changes = read_changes(cursor, self.last, placeholder)
        if changes is not None:
            self.report.changed(changes)
        self.last = now


class SqliteWatcher(Watcher):
    def __init__(self, report: Report, path: bytes, interval: float = SQLITE_POLL) -> None:
        super().__init__(report)
        self.path = path
        self.interval = interval

    def follow(self) -> None:
        import sqlite3

        # Read-only: this connection never writes (and never creates the file).
        uri = "file:" + quote(b"/" + self.path.lstrip(b"/")) + "?mode=ro"
        conn = sqlite3.connect(uri, uri=True, timeout=5)
        try:
            cursor = conn.cursor()
            self._went_live(cursor, "?")
            while not self._stopping.wait(self.interval):
                self._catch_up(cursor, "?")
        finally:
            conn.close()


class PostgresWatcher(Watcher):
    def __init__(
        self, report: Report, connect: Callable[[], Any], fallback: float = FALLBACK_POLL
    ) -> None:
        super().__init__(report)
        self.connect = connect
        self.fallback = fallback

    def follow(self) -> None:
        conn = self.connect()
        try:
            conn.autocommit = True
            cursor = conn.cursor()
            queries.note(f"LISTEN {CHANNEL}", background=True)
            cursor.execute(f"LISTEN {CHANNEL}")
            self._went_live(cursor, "%s")
            while not self._stopping.is_set():
                readable, _, _ = select.select([conn, self._wake], [], [], self.fallback)
                if self._wake in readable:
                    return
                if not readable:
                    self._catch_up(cursor, "%s")  # the fallback poll
                    continue
                conn.poll()
                payloads = [n.payload for n in conn.notifies]
                del conn.notifies[:]
                self._notified(payloads)
        finally:
            conn.close()

    def _notified(self, payloads: list[str]) -> None:
        assert self.last is not None
        states: set[int] = set()
        everything = False
        for payload in payloads:
            generation, scope = parse_notification(payload)
            if generation <= self.last:
                continue  # committed before we read the generation
            # Generations commit in order, one by one: a gap means one went missing.
            everything |= scope is None or generation != self.last + 1
            if scope is not None:
                states.add(scope)
            self.last = generation
        if everything:
            self.report.changed(EVERYTHING)
        elif states:
            self.report.changed(Changes(False, frozenset(states)))


def watcher_for(database_url: str, report: Report) -> Watcher:
    """The watcher for this database: notifications on PostgreSQL, a poll on SQLite."""
    from pulp_content.service.config import connect_params, sqlite_path

    if database_url.startswith("sqlite:"):
        return SqliteWatcher(report, os.fsencode(sqlite_path(database_url)))
    params = connect_params(database_url)

    def connect() -> Any:
        import psycopg2

        # Keepalives: a connection that silently died is noticed in seconds, not hours
        # (unless the database URL sets them: its options win, and are not repeated).
        keepalives = {"keepalives": 1, "keepalives_idle": 2, "keepalives_interval": 1}
        return psycopg2.connect(
            **{**keepalives, "keepalives_count": 2, **params},
            application_name="pulp-content invalidation",
        )

    return PostgresWatcher(report, connect)


class LoopReport:
    """Hands what a watcher reports to the event loop that owns the cache."""

    def __init__(self, cache: ResolutionCache, loop: Any) -> None:
        self.cache = cache
        self.loop = loop

    def changed(self, changes: Changes) -> None:
        self.loop.call_soon_threadsafe(apply, self.cache, changes)

    def live(self, live: bool) -> None:
        self.loop.call_soon_threadsafe(self.cache.set_live, live)
