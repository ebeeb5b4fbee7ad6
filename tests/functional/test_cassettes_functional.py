"""Lazy downloads replayed from recorded upstream traffic (vcrpy).

Only the service -> upstream requests are recorded: the fixture remote listens on a
fixed port and `before_record_request` drops everything else (the test client's own
requests, which vcrpy would otherwise capture too, pass through untouched).

Replay is the default and needs no fixture remote. To record again against the live
fixture remote:

    PULP_CONTENT_RECORD=1 pytest tests/functional/test_cassettes_functional.py
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from vcr.cassette import Cassette

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import FileSpec, FixtureRemote
from tests.cassettes import RECORD, cassette
from tests.conftest import Scenario

pytestmark = pytest.mark.functional

PORT = 48173  # fixed: recorded URLs carry it
FILES = [FileSpec("a.bin", 2048, 21), FileSpec("dir/b.bin", 1024, 22)]


@pytest.fixture
def client(inprocess_client):
    """vcrpy patches aiohttp in this process: the service must run here to be replayed."""
    return inprocess_client


@pytest.fixture
def recorded(cli, db) -> Iterator[Scenario]:
    """A scenario whose upstream is the fixture remote on PORT: live when recording,
    absent (replayed) otherwise."""
    remote = FixtureRemote(port=PORT)
    if RECORD:
        with Background(remote):
            yield Scenario(cli, remote, db)
    else:
        yield Scenario(cli, remote, db)


def upstream_requests(cass: Cassette, path: str | None = None) -> int:
    """Upstream requests the test made: played back, or recorded while recording."""
    if RECORD:
        return sum(1 for r in cass.requests if path is None or r.path == path)
    return sum(
        n for i, n in cass.play_counts.items() if path is None or cass.requests[i].path == path
    )


def test_on_demand_file_fetched_three_times_hits_the_upstream_once(recorded, client):
    with cassette("on_demand_three_fetches", (PORT,)) as cass:
        base = recorded.publish("cas-od", FILES, "on_demand")
        for _ in range(3):
            response = client.get(base + "a.bin")
            assert response.complete and response.body == FILES[0].content()
    assert upstream_requests(cass, "/cas-od/a.bin") == 1
    assert upstream_requests(cass) == 2  # the manifest during the sync, the file once
    assert RECORD or cass.all_played


def test_streamed_file_is_fetched_every_time(recorded, client):
    with cassette("streamed_two_fetches", (PORT,)) as cass:
        base = recorded.publish("cas-st", FILES, "streamed")
        for _ in range(2):
            assert client.get(base + "dir/b.bin").body == FILES[1].content()
    assert upstream_requests(cass, "/cas-st/dir/b.bin") == 2
    assert RECORD or cass.all_played


def test_immediate_never_touches_the_upstream_at_serve_time(recorded, client):
    with cassette("immediate_sync_then_serve", (PORT,)) as cass:
        base = recorded.publish("cas-im", FILES, "immediate")
        during_sync = upstream_requests(cass)
        for spec in FILES * 2:
            assert client.get(base + spec.relative_path).body == spec.content()
    assert during_sync == 3  # the manifest and both files
    assert upstream_requests(cass) == during_sync
    assert RECORD or cass.all_played
