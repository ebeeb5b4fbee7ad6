"""usage.Usage: noted uses are written together, and kept while the database is away."""

from __future__ import annotations

import datetime as dt

from pulp_content.service.errors import DatabaseUnavailable
from pulp_content.service.usage import Usage


class Recorder:
    def __init__(self) -> None:
        self.writes: list[frozenset[str]] = []
        self.down = False

    async def __call__(self, served: frozenset[str], when: dt.datetime) -> None:
        if self.down:
            raise DatabaseUnavailable("database unavailable: test")
        self.writes.append(served)


async def test_one_write_for_many_uses_and_none_when_nothing_was_served() -> None:
    write = Recorder()
    usage = Usage(write, 3600)
    for sha in ("a", "b", "a", "a"):
        usage.note(sha)
    await usage.flush()
    await usage.flush()
    assert write.writes == [frozenset({"a", "b"})]


async def test_uses_are_kept_while_the_database_is_away() -> None:
    write = Recorder()
    usage = Usage(write, 3600)
    usage.note("a")
    write.down = True
    await usage.flush()
    write.down = False
    usage.note("b")
    usage.start()
    await usage.aclose()  # shutdown writes what is left
    assert write.writes == [frozenset({"a", "b"})]
