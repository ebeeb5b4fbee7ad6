"""When an artifact was last served: noted in memory, written in one UPDATE every
interval and at shutdown, never a statement per request."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest

from pulp_content.fixtures.background import Background
from tests.functional.conftest import Client, ServiceServer
from tests.functional.test_reclaim_functional import LAZY, artifact_row, fetch_all
from tests.helpers import eventually

pytestmark = pytest.mark.functional


def test_use_is_written_every_interval_and_warm_requests_ask_nothing(scenario):
    base = scenario.publish("lazy", LAZY, "on_demand")
    served, fetched_only = LAZY
    server = ServiceServer(dataclasses.replace(scenario.settings, last_used_interval=0.2))
    with Background(server):
        client = Client(server)
        fetch_all(client, base, LAZY)
        # Fetched, not yet served from storage: its `created` stands for its last use.
        assert artifact_row(served).last_used is None
        assert client.get(base + served.relative_path).status == 200  # resolved, cached
        for _ in range(5):
            assert client.get(base + served.relative_path).status == 200
            assert client.last_queries() == 0  # the cache answers; the use is a set add
        assert eventually(lambda: artifact_row(served).last_used is not None)
        first = artifact_row(served).last_used
        assert client.get(base + served.relative_path).status == 200
        assert eventually(lambda: artifact_row(served).last_used > first)
    assert artifact_row(fetched_only).last_used is None


def test_use_noted_since_the_last_write_is_written_at_shutdown(scenario):
    base = scenario.publish("lazy", LAZY, "on_demand")
    server = ServiceServer(dataclasses.replace(scenario.settings, last_used_interval=3600))
    with Background(server):
        client = Client(server)
        fetch_all(client, base, LAZY[:1])
        assert client.get(base + LAZY[0].relative_path).status == 200
        assert artifact_row(LAZY[0]).last_used is None  # an hour to go
    assert artifact_row(LAZY[0]).last_used is not None


def generation() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM pulp_content_generation WHERE id = 1")
        return int(cursor.fetchone()[0])


def test_writing_use_leaves_every_workers_cache_alone(scenario):
    """The time an artifact was served changes no answer: no change is reported (the
    artifact UPDATE trigger looks at sha256, size and file only, migration 0009)."""
    import datetime as dt

    from pulp_content.service.ingest import write_use
    from pulp_content.service.models import Artifact

    scenario.publish("kept", LAZY[:1], "immediate")
    sha256 = hashlib.sha256(LAZY[0].content()).hexdigest()
    before = generation()
    write_use(frozenset({sha256}), dt.datetime.now(dt.UTC))
    assert Artifact.objects.get(sha256=sha256).last_used is not None
    assert generation() == before
    Artifact.objects.filter(sha256=sha256).update(size=1)
    assert generation() == before + 1
