"""Partial files and the claims on them: what the start-up sweep may remove and what it
must not, with flocks (SQLite) and with PostgreSQL advisory locks (two `AdvisoryLocks`
are two database sessions: two hosts, as far as the locks can tell)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulp_content.service.locks import (
    AdvisoryLocks,
    FileLock,
    FileLocks,
    Locks,
    held_elsewhere,
    lock_of,
)
from pulp_content.service.storage import FileSystemStorage


def test_lock_of_a_partial_and_of_a_batch_member():
    tmp = Path("/s/tmp")
    assert lock_of(tmp / "ab12.partial") == tmp / "ab12.lock"
    assert lock_of(tmp / "ff00-7.partial") == tmp / "ff00.lock"
    assert AdvisoryLocks.key(tmp / "ff00-7.partial") == AdvisoryLocks.key(tmp / "ff00.partial")
    assert AdvisoryLocks.key(tmp / "ff00.partial") != AdvisoryLocks.key(tmp / "ff01.partial")


@pytest.fixture(params=["flock", "advisory"])
def make_locks(request) -> Iterator[Callable[[], Locks]]:
    """New lock sets: each is another process (flock) or another database session."""
    made: list[Locks] = []
    if request.param == "flock":

        def make() -> Locks:
            return FileLocks()
    else:
        from tests.conftest import POSTGRES, _admin_or_skip

        _admin_or_skip().close()  # skips without a server; fails with CI set
        from pulp_content.service.locks import locks_for

        def make() -> Locks:
            made.append(locks_for(POSTGRES))
            return made[-1]

    yield make
    for locks in made:
        locks.close()


def test_sweep_removes_crash_leftovers_and_keeps_live_downloads(tmp_path, make_locks):
    storage = FileSystemStorage(tmp_path, make_locks())
    writer = make_locks()
    leftover = storage.new_partial()
    leftover.write_bytes(b"from a crash")
    live = storage.new_partial("a" * 64)
    live.write_bytes(b"being written")
    claim = writer.claim(live)
    assert claim is not None
    assert writer.claim(live) is None  # taken, even by its own holder
    assert storage.locks.held(live) and storage.locks.claim(live) is None
    try:
        assert storage.sweep_partials() == 1
        assert storage.partials() == [live]
    finally:
        claim.release()
    assert not storage.locks.held(live)
    assert storage.sweep_partials() == 1
    assert storage.partials() == []
    assert list(storage.tmp.iterdir()) == []  # no lock files left either


def test_a_batch_keeps_its_files_from_the_sweep_until_closed(tmp_path, make_locks):
    storage = FileSystemStorage(tmp_path, make_locks())
    other = FileSystemStorage(tmp_path, make_locks())  # a service starting meanwhile
    with storage.batch() as batch:
        first, second = batch.new(), batch.new()
        assert first != second
        first.write_bytes(b"1")
        second.write_bytes(b"2")
        assert other.locks.held(first)
        assert other.sweep_partials() == 0
        storage.place(first, "1" * 64)  # one of them is kept
        storage.settle(first, "1" * 64)
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


def test_claims_die_with_their_session_and_the_next_call_reconnects(tmp_path, caplog):
    """PostgreSQL drops a session's locks with it: another host may then take over (the
    holder's download is no longer protected, which is logged when the holder next talks
    to the database), and the holder's next claim works on a new connection."""
    from tests.conftest import POSTGRES, _admin_or_skip

    admin = _admin_or_skip()
    from pulp_content.service.locks import locks_for

    holder, other = locks_for(POSTGRES), locks_for(POSTGRES)
    partial = tmp_path / ("c" * 64 + ".partial")
    try:
        first = holder.claim(partial)
        assert first is not None
        assert other.held(partial)
        with admin.cursor() as cur:  # waits up to 5 s for the backend to be gone
            cur.execute("SELECT pg_terminate_backend(%s, 5000)", (holder._conn.get_backend_pid(),))
        assert not other.held(partial)
        first.release()  # finds the connection gone, and connects again
        holder.flush()  # the release runs on the lock thread: wait for it
        assert "lost the database connection holding 1 download claims" in caplog.text
        again = holder.claim(partial)
        assert again is not None and other.held(partial)
        again.release()
    finally:
        holder.close()
        other.close()
        admin.close()


@pytest.mark.postgres_only
def test_another_host_learns_where_the_holder_of_a_claim_is_reached(db, tmp_path):
    """A session of claims says where its host is reached as it connects (a row: any
    length, where a session's name keeps 63 bytes); another host that finds one of its
    claims held learns it, and nothing once the claim is dropped or its session gone."""
    import asyncio

    from pulp_content.service.locks import locks_for
    from tests.conftest import _admin_or_skip

    admin = _admin_or_skip()
    url = "http://content-host-01.internal.example.com:24816"  # 49 characters
    holder = locks_for(db.database_url, url)
    other = locks_for(db.database_url, "http://10.0.0.2:24816")
    partial = tmp_path / ("d" * 64 + ".partial")
    try:
        claim = holder.claim(partial)
        assert claim is not None
        assert asyncio.run(other.aholder(partial)) == url
        assert asyncio.run(holder.aholder(partial)) is None  # its own
        claim.release()
        holder.flush()
        assert asyncio.run(other.aholder(partial)) is None
        assert holder.claim(partial) is not None
        with admin.cursor() as cur:  # the holder's host is gone, and its session with it
            cur.execute("SELECT pg_terminate_backend(%s, 5000)", (holder._conn.get_backend_pid(),))
        assert asyncio.run(other.aholder(partial)) is None
    finally:
        holder.close()
        other.close()
        admin.close()
