"""WriteBehind: a download's writes and digests on a thread of their own, in order, with
the event loop waiting only when the disk falls BACKLOG chunks behind."""

from __future__ import annotations

import asyncio
import hashlib
import threading
from pathlib import Path

import pytest

from pulp_content.service.shared import WriteBehind


async def test_chunks_are_written_and_digested_in_order(tmp_path: Path) -> None:
    digest = hashlib.sha256()
    seen: list[int] = []
    chunks = [bytes([i]) * (1000 + i) for i in range(50)]
    with open(tmp_path / "f", "w+b") as out:
        writer = WriteBehind(out, digest.update, seen.append)
        for chunk in chunks:
            await writer.put(chunk)
        await writer.close()
    data = b"".join(chunks)
    assert (tmp_path / "f").read_bytes() == data
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert seen == sorted(seen) and seen[-1] == len(data)


async def test_a_slow_disk_holds_the_reader_back_after_the_backlog(tmp_path: Path) -> None:
    """Memory stays bounded: with the disk stuck, the reader hands over BACKLOG chunks
    (plus the one being written), then waits."""
    stuck = threading.Event()
    handed = 0

    def digest(_: bytes) -> None:
        stuck.wait()

    with open(tmp_path / "f", "w+b") as out:
        writer = WriteBehind(out, digest, lambda _: None)

        async def read() -> None:
            nonlocal handed
            for _ in range(20):
                await writer.put(b"x" * 10)
                handed += 1

        reading = asyncio.ensure_future(read())
        for _ in range(100):  # the reader needs only the loop's turns, no other thread
            await asyncio.sleep(0)
        assert handed == WriteBehind.BACKLOG
        stuck.set()
        await reading
        await writer.close()
    assert (tmp_path / "f").stat().st_size == 200


async def test_a_failed_write_is_raised_and_nothing_after_it_is_written(tmp_path: Path) -> None:
    def digest(chunk: bytes) -> None:
        if chunk == b"bad":
            raise OSError(28, "No space left on device")

    with open(tmp_path / "f", "w+b") as out:
        writer = WriteBehind(out, digest, lambda _: None)
        await writer.put(b"good")
        await writer.put(b"bad")
        with pytest.raises(OSError, match="No space"):
            for _ in range(10):
                await writer.put(b"after")
            await writer.close()
        writer.join()
    assert (tmp_path / "f").read_bytes() == b"good"
