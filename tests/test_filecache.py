"""Small stored files in memory: bounded by bytes, and a warm one opens no file at all."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from aiohttp.test_utils import make_mocked_request

from pulp_content.service.filecache import SmallFiles
from pulp_content.service.locks import FileLocks
from pulp_content.service.serve import serve
from pulp_content.service.storage import FileSystemStorage, artifact_name
from pulp_content.service.types import ArtifactRef, LocalArtifact


def test_kept_within_the_budget_least_recently_used_out_first():
    files = SmallFiles(budget=10)
    files.put("a", b"aaaa")
    files.put("b", b"bbbb")
    assert files.get("a") == b"aaaa"  # now b is the least recently used
    files.put("c", b"cccc")
    assert (files.get("a"), files.get("b"), files.get("c")) == (b"aaaa", None, b"cccc")
    assert files.used == 8
    files.put("big", b"x" * 11)  # more than the whole budget: not kept, nothing pushed out
    assert files.get("big") is None and len(files) == 2


def stored(tmp_path: Path, content: bytes, size: int) -> tuple[FileSystemStorage, LocalArtifact]:
    storage = FileSystemStorage(tmp_path / "storage", FileLocks())
    name = artifact_name("ab" + "c" * 62)
    path = storage.path_of(name)
    path.parent.mkdir(parents=True)
    path.write_bytes(content)
    hit = LocalArtifact("/pulp/content/x/f", artifact=ArtifactRef("ab" + "c" * 62, size, name))
    return storage, hit


def opened_files(paths: list[str]):  # type: ignore[no-untyped-def]
    def hook(event: str, args: tuple[object, ...]) -> None:
        if event == "open" and isinstance(args[0], (str, bytes, Path)):
            paths.append(str(args[0]))

    return hook


_opened: list[str] = []
sys.addaudithook(opened_files(_opened))


@pytest.mark.parametrize(
    ("headers", "body"), [({}, bytes(range(100))), ({"Range": "bytes=10-19"}, bytes(range(10, 20)))]
)
async def test_a_warm_small_file_is_answered_from_memory(tmp_path, headers, body):
    storage, hit = stored(tmp_path, bytes(range(100)), 100)
    files = SmallFiles(1024)
    first = await serve(make_mocked_request("GET", "/f", headers=headers), hit, storage, files)
    assert first.body == body  # type: ignore[attr-defined]
    await asyncio.sleep(0)
    _opened.clear()
    again = await serve(make_mocked_request("GET", "/f", headers=headers), hit, storage, files)
    assert again.body == body  # type: ignore[attr-defined]
    assert not any("storage" in p for p in _opened)  # no file opened, on any thread
    assert files.stats.hits == 1


async def test_a_damaged_file_is_not_kept(tmp_path):
    storage, hit = stored(tmp_path, b"short", 100)  # the row says 100 bytes
    files = SmallFiles(1024)
    await serve(make_mocked_request("GET", "/f"), hit, storage, files)
    assert len(files) == 0
