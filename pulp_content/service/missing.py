"""What the upstream of a pull-through distribution said it does not have (a 404), kept
for the remote's metadata max age, as nginx's `proxy_cache_valid 404` would: a herd of
clients asking for a file the upstream lacks (apt asks for the `InRelease` of an unsigned
repository first) makes one upstream request per max age, not one per group of clients
arriving together.

Each worker keeps the 404s it met in memory (`MissingUpstream`: no statement on the way
to the answer). The one that downloads also records the 404 in the database before it
lets go of the download's claim (`Persist.note_missing`), where every other worker and
host finds it: those following the download, and whoever takes the claim next and looks
for a save before asking the upstream (`Persist.stored`, the same statement)."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable

from pulp_content.service.freshness import DEFAULT_METADATA_MAX_AGE
from pulp_content.service.types import RemoteRef, RemoteSource

BOUND = 10_000  # paths kept; the least recently noted go first


def key_of(src: RemoteSource) -> Hashable | None:
    """What a 404 is remembered by: the remote (its id and its last change) and the URL;
    None for what is not pull-through."""
    if src.source != "pull_through" or not src.remote_artifacts:
        return None
    ra = src.remote_artifacts[0]
    return ra.config.id, ra.config.updated, ra.url


def lifetime(ra: RemoteRef) -> int:
    """Seconds an upstream's 404 for `ra` stands: its remote's metadata max age."""
    max_age = ra.config.metadata_max_age
    return DEFAULT_METADATA_MAX_AGE if max_age is None else max_age


class MissingUpstream:
    def __init__(self, bound: int = BOUND, clock: Callable[[], float] = time.monotonic) -> None:
        self._until: OrderedDict[Hashable, float] = OrderedDict()
        self._bound = bound
        self._clock = clock

    def known(self, src: RemoteSource) -> bool:
        """Whether the upstream said it lacks `src` within its max age."""
        key = key_of(src)
        until = self._until.get(key) if key is not None else None
        if until is None:
            return False
        if until <= self._clock():
            del self._until[key]
            return False
        return True

    def note(self, src: RemoteSource) -> None:
        """The upstream answered 404 for `src`."""
        key = key_of(src)
        if key is None:
            return
        self._until[key] = self._clock() + lifetime(src.remote_artifacts[0])
        self._until.move_to_end(key)
        while len(self._until) > self._bound:
            self._until.popitem(last=False)
