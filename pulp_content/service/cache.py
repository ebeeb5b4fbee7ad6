"""The per-process resolution cache: a path whose answer is known is decided on the event
loop, with no database statement and no thread hop.

What is kept is `Located`: what a path leads to before its guard (the guard runs on every
request, `guards.admit`), for every kind of answer, 404s included. Two LRUs, each bounded:
answers, and 404s apart, so a flood of distinct missing paths never pushes out the
answers that are served.

Invalidation (`service.invalidation`) reports changes as they commit: "everything", or
"the state of content artifact N" (its artifact saved, a remote artifact of it marked
failed). The second drops only the answers that depend on such a state: a lazy artifact
(by its content artifact), listings (which show stored sizes), and the 404 of content
with no remote. While invalidation cannot vouch for the cache (not connected yet, or its
connection lost) the cache is off: nothing is read from it or put in it.

An answer that depends on the query string (`Located.cacheable` False) is never kept.
Nothing here touches the ORM; everything runs on the event loop.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from pulp_content.service.types import (
    NOT_DOWNLOADED,
    Listing,
    LocalArtifact,
    Located,
    NotFound,
    Pulled,
    RemoteSource,
)

# A content artifact's state changed: these keys' answers may be wrong.
ANY_STATE = -1


def dependencies(located: Located) -> frozenset[int]:
    """The content artifacts whose state this answer depends on (ANY_STATE: any of them)."""
    match located.resolution:
        case RemoteSource(content_artifact_id=int() as ca):
            return frozenset({ca})
        case RemoteSource():
            return frozenset({ANY_STATE})  # pull-through, not recorded yet
        case LocalArtifact(pulled=Pulled(content_artifact_id=ca)):
            # A pull-through copy: revalidated (validated_at) or replaced by new bytes.
            return frozenset({ca})
        case Listing():
            return frozenset({ANY_STATE})
        case NotFound(reason=reason) if reason == NOT_DOWNLOADED:
            return frozenset({ANY_STATE})
    return frozenset()


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    invalidations: int = 0


class _Lru:
    """A bounded mapping, least recently used first out."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[str, Located] = OrderedDict()

    def get(self, key: str) -> Located | None:
        found = self.entries.get(key)
        if found is not None:
            self.entries.move_to_end(key)
        return found

    def put(self, key: str, value: Located) -> tuple[str, Located] | None:
        """Keep `value`; returns the entry pushed out to make room, if any."""
        self.entries[key] = value
        self.entries.move_to_end(key)
        if len(self.entries) > self.size:
            return self.entries.popitem(last=False)
        return None


class ResolutionCache:
    """Answers by percent-encoded path (no query), dropped as changes are reported."""

    def __init__(self, size: int, negative_size: int) -> None:
        # Told the name of each CacheStats count as it grows (the service's metrics).
        self._report: Callable[[str], None] | None = None
        self._answers = _Lru(size)
        self._missing = _Lru(negative_size)
        # Content artifact id (or ANY_STATE) -> keys of answers that depend on its state.
        self._by_state: dict[int, set[str]] = {}
        # Changes every time anything is dropped: an answer computed across a change is
        # not kept (it may predate the change, see `put`).
        self.epoch = 0
        self.live = False
        self.stats = CacheStats()

    def __len__(self) -> int:
        return len(self._answers.entries) + len(self._missing.entries)

    def get(self, key: str) -> Located | None:
        found = (self._answers.get(key) or self._missing.get(key)) if self.live else None
        self._count("misses" if found is None else "hits")
        return found

    def report_to(self, report: Callable[[str], None]) -> None:
        """Tell `report` of each hit, miss and invalidation (by its CacheStats name)."""
        self._report = report

    def _count(self, event: str) -> None:
        setattr(self.stats, event, getattr(self.stats, event) + 1)
        if self._report is not None:
            self._report(event)

    def put(self, key: str, located: Located, epoch: int) -> None:
        """Keep an answer computed from the database after `epoch` was current; dropped
        if anything changed meanwhile (the change may have been read, or not)."""
        if not self.live or epoch != self.epoch:
            return
        self._discard(key)
        lru = self._missing if isinstance(located.resolution, NotFound) else self._answers
        if lru.size <= 0:
            return
        evicted = lru.put(key, located)
        if evicted is not None:
            self._unindex(*evicted)
        for dep in dependencies(located):
            self._by_state.setdefault(dep, set()).add(key)

    def _discard(self, key: str) -> None:
        for lru in (self._answers, self._missing):
            old = lru.entries.pop(key, None)
            if old is not None:
                self._unindex(key, old)

    def _unindex(self, key: str, old: Located) -> None:
        for dep in dependencies(old):
            keys = self._by_state.get(dep)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._by_state[dep]

    # -- invalidation ----------------------------------------------------------------------
    def clear(self) -> None:
        """Drop everything."""
        self.epoch += 1
        self._count("invalidations")
        self._answers.entries.clear()
        self._missing.entries.clear()
        self._by_state.clear()

    def drop_states(self, content_artifacts: Iterable[int]) -> None:
        """Drop the answers that depend on these content artifacts' state."""
        self.epoch += 1
        self._count("invalidations")
        for ca in {*content_artifacts, ANY_STATE}:
            for key in self._by_state.pop(ca, set()):
                self._answers.entries.pop(key, None)
                self._missing.entries.pop(key, None)

    def set_live(self, live: bool) -> None:
        """Invalidation vouches for the cache (True) or cannot (False: drop and stop).
        Either way an answer being computed now is not kept: it may predate the switch."""
        if not live:
            self.clear()
        self.epoch += 1
        self.live = live


class CachedLocator:
    """`locate` through the cache: a hit is answered on the event loop, a miss runs
    `locate` (off the loop) and keeps its answer."""

    def __init__(
        self, locate: Callable[[str, str], Awaitable[Located]], cache: ResolutionCache
    ) -> None:
        self._locate = locate
        self.cache = cache

    async def __call__(self, raw_path: str, query_string: str = "") -> Located:
        """What `raw_path` (percent-encoded, no query) leads to."""
        found = self.cache.get(raw_path)
        if found is not None:
            return found
        return await self.afresh(raw_path, query_string)

    async def afresh(self, raw_path: str, query_string: str = "") -> Located:
        """What `raw_path` leads to, asked of the database whatever the cache holds (a
        cached answer named a file that is gone: the change may not have been told yet)."""
        epoch = self.cache.epoch
        located = await self._locate(raw_path, query_string)
        if located.cacheable:
            self.cache.put(raw_path, located, epoch)
        return located
