"""Partial files and their locks: what the start-up sweep may remove and what it must not."""

from __future__ import annotations

from pathlib import Path

from service.locks import FileLock, held_elsewhere
from service.storage import FileSystemStorage, lock_of


def test_lock_of_a_partial_and_of_a_batch_member():
    tmp = Path("/s/tmp")
    assert lock_of(tmp / "ab12.partial") == tmp / "ab12.lock"
    assert lock_of(tmp / "ff00-7.partial") == tmp / "ff00.lock"


def test_sweep_removes_crash_leftovers_and_keeps_live_downloads(tmp_path):
    storage = FileSystemStorage(tmp_path)
    leftover = storage.new_partial()
    leftover.write_bytes(b"from a crash")
    live = storage.new_partial("a" * 64)
    live.write_bytes(b"being written")
    lock = FileLock(lock_of(live))
    assert lock.try_acquire()
    try:
        assert storage.sweep_partials() == 1
        assert storage.partials() == [live]
    finally:
        lock.release()
    assert not lock_of(live).exists()
    assert storage.sweep_partials() == 1
    assert storage.partials() == []
    assert list(storage.tmp.iterdir()) == []  # no lock files left either


def test_a_batch_keeps_its_files_from_the_sweep_until_closed(tmp_path):
    storage = FileSystemStorage(tmp_path)
    with storage.batch() as batch:
        first, second = batch.new(), batch.new()
        assert first != second
        first.write_bytes(b"1")
        second.write_bytes(b"2")
        assert held_elsewhere(lock_of(first))
        assert storage.sweep_partials() == 0
        storage.place(first, "1" * 64)  # one of them is kept
    assert storage.path_of("artifact/11/" + "1" * 62).read_bytes() == b"1"
    assert storage.partials() == []
    assert list(storage.tmp.iterdir()) == []


def test_a_released_lock_can_be_taken_again(tmp_path):
    path = tmp_path / "x.lock"
    first, second = FileLock(path), FileLock(path)
    assert first.try_acquire()
    assert not second.try_acquire()
    assert held_elsewhere(path)
    first.release()
    assert not path.exists() and not held_elsewhere(path)
    assert second.try_acquire()
    second.release()
