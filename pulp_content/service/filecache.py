"""Small stored files kept in memory, so a warm request for one needs no thread hop.

Stored artifacts are content-addressed and never rewritten: the bytes at a storage path
are the same for as long as the path exists, so what is kept here needs no invalidation.
(A file removed from storage is served from here until pushed out; its answer leaves the
resolution cache when its row goes.) Reading a file that is not kept yet still happens on
a thread (`serve`), so the event loop never waits on the disk. Bounded by total bytes,
least recently used out first. Runs on the event loop only; imports nothing heavy.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass
class FileCacheStats:
    hits: int = 0
    misses: int = 0


class SmallFiles:
    """Bytes of small stored files by storage path, at most `budget` bytes in all."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.used = 0
        self._files: OrderedDict[str, bytes] = OrderedDict()
        self.stats = FileCacheStats()

    def __len__(self) -> int:
        return len(self._files)

    def get(self, storage_path: str) -> bytes | None:
        found = self._files.get(storage_path)
        if found is None:
            self.stats.misses += 1
            return None
        self._files.move_to_end(storage_path)
        self.stats.hits += 1
        return found

    def put(self, storage_path: str, data: bytes) -> None:
        if len(data) > self.budget or storage_path in self._files:
            return
        self._files[storage_path] = data
        self.used += len(data)
        while self.used > self.budget:
            _, dropped = self._files.popitem(last=False)
            self.used -= len(dropped)
