"""When artifacts were last served, recorded cheaply: never one database write per
request.

A worker notes the sha256 of each stored artifact it serves in a set in memory (a warm
request stays free of statements: the resolution cache answers it, and this is a set
add); every `interval` seconds, and at shutdown, the set is written in one UPDATE per
`BATCH` artifacts, off the event loop. `reclaim --older-than` and the remotes' quotas
read it (`service.reclaim`). A worker killed without its shutdown loses at most one
interval's notes: the artifacts then look older than they are, never newer.
Nothing here touches the ORM (`write_use` in `ingest` does).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

from pulp_content.service.errors import DatabaseUnavailable

log = logging.getLogger(__name__)
SHORTEST = 0.1  # seconds: an interval of 0 still lets the loop breathe

Write = Callable[[frozenset[str], dt.datetime], Awaitable[None]]


class Usage:
    """The artifacts served since the last write, and the loop that writes them."""

    def __init__(self, write: Write, interval: float) -> None:
        self._write = write
        self.interval = max(interval, SHORTEST)
        self._served: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    def note(self, sha256: str) -> None:
        """An artifact was served now (on the event loop; no I/O)."""
        self._served.add(sha256)

    async def flush(self) -> None:
        """Write what was noted, as used now; kept for the next try if the database is
        away (logged where it was seen)."""
        if not self._served:
            return
        served, self._served = frozenset(self._served), set()
        try:
            # Shielded: a shutdown cancelling the loop meanwhile does not lose them.
            await asyncio.shield(self._write(served, dt.datetime.now(dt.UTC)))
        except DatabaseUnavailable:
            self._served |= served

    def start(self) -> None:
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.flush()

    async def aclose(self) -> None:
        """Stop the loop and write what is left (shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()
