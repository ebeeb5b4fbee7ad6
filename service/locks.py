"""Advisory file locks on the storage filesystem: who downloads an artifact, across
processes (and hosts whose shared filesystem honours flock)."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


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
