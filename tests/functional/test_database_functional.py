"""The database goes away under a running `serve --workers 2` and comes back."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.config import Settings
from tests.functional.conftest import ServiceProcess
from tests.helpers import eventually, http_status, run_command

pytestmark = [pytest.mark.functional, pytest.mark.postgres_only]

FILES = [FileSpec(f"f{i}.bin", 100_000 + i, 60 + i) for i in range(6)]


class Database:
    """A throw-away database of its own, so that cutting its connections cuts only the
    service's (never this test process's own)."""

    def __init__(self, url: str) -> None:
        from tests.conftest import _admin_or_skip

        self.name = url.rsplit("/", 1)[1]
        self.admin = _admin_or_skip()

    def terminate_backends(self) -> int:
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT count(pg_terminate_backend(pid, 5000)) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (self.name,),
            )
            return int(cur.fetchone()[0])

    def backends(self) -> int:
        """Connections to this database, now, but the cache's invalidation watchers'
        (which follow the database whatever the requests)."""
        with self.admin.cursor() as cur:
            cur.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s"
                " AND application_name <> 'pulp-content invalidation'",
                (self.name,),
            )
            return int(cur.fetchone()[0])

    def allow_connections(self, allowed: bool) -> None:
        with self.admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{self.name}" WITH ALLOW_CONNECTIONS {allowed}')

    def close(self) -> None:
        self.allow_connections(True)
        self.admin.close()


@pytest.fixture
def served(upstream, tmp_path: Path) -> Iterator[tuple[ServiceProcess, Database]]:
    """`serve --workers 2` on a database of its own, with an on_demand repository."""
    from tests.conftest import throwaway_postgres

    with throwaway_postgres("pulp_content_outage") as url:
        env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_DATABASE_URL": url}
        manifest = upstream.add_repository("outage", FILES)
        for args in (
            ["migrate"],
            ["remote", "create", "outage", "--url", manifest, "--policy", "on_demand"],
            ["repository", "create", "outage", "--remote", "outage"],
            ["repository", "sync", "outage"],
            ["distribution", "create", "outage", "--base-path", "outage", "--repository", "outage"],
        ):
            done = run_command(*args, env=env)
            assert done.returncode == 0, done.stderr
        database = Database(url)
        try:
            with ServiceProcess(Settings(home=tmp_path, database_url=url), workers=2) as process:
                yield process, database
        finally:
            database.close()


def test_connections_cut_by_the_server_are_replaced(served):
    """pg_terminate_backend on every connection of a running `serve --workers 2`: the
    next requests are answered as before (no 500, no restart), stored and lazy alike."""
    process, database = served
    port = process.port
    stored, lazy = "/pulp/content/outage/f0.bin", "/pulp/content/outage/f1.bin"
    # Every worker's threads and the download claims hold a connection now.
    for _ in range(10):
        assert http_status(port, stored) == 200
        assert http_status(port, "/health") == 200
    assert database.terminate_backends() > 0
    seen = [http_status(port, path) for path in (lazy, stored, "/health") for _ in range(6)]
    assert 500 not in seen, seen
    assert eventually(lambda: http_status(port, "/health") == 200)
    assert all(http_status(port, f"/pulp/content/outage/{f.relative_path}") == 200 for f in FILES)


def test_health_is_503_during_an_outage_and_200_after_it(served):
    process, database = served
    port = process.port
    assert http_status(port, "/pulp/content/outage/f0.bin") == 200
    database.allow_connections(False)
    database.terminate_backends()
    assert eventually(lambda: http_status(port, "/health") == 503)
    # Content needs the database too: a 503 (try again later), never a 500.
    assert http_status(port, "/pulp/content/outage/f2.bin") == 503
    assert http_status(port, "/pulp/content/outage/f0.bin") == 503
    database.allow_connections(True)
    assert eventually(lambda: http_status(port, "/health") == 200)
    for f in FILES:
        assert http_status(port, f"/pulp/content/outage/{f.relative_path}") == 200
    assert "Traceback" not in process.output()


def test_liveness_stays_200_while_readiness_is_503(served):
    """An outage takes the workers out of the load balancer (/readyz 503), never gets
    them restarted (/livez 200); /livez does not even connect to the database."""
    process, database = served
    port = process.port
    assert http_status(port, "/readyz") == 200
    database.terminate_backends()
    assert eventually(lambda: database.backends() == 0)
    for _ in range(20):
        assert http_status(port, "/livez") == 200
    assert database.backends() == 0  # allowed to connect, and nobody did
    database.allow_connections(False)
    assert eventually(lambda: http_status(port, "/readyz") == 503)
    assert all(http_status(port, path) == 503 for path in ("/readyz", "/health") for _ in range(4))
    assert all(http_status(port, "/livez") == 200 for _ in range(10))
    database.allow_connections(True)
    assert eventually(lambda: http_status(port, "/readyz") == 200)
    assert "Traceback" not in process.output()
