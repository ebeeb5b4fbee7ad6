"""/livez and /readyz (and /health, /readyz's old name) over a real socket: liveness never
asks the database or the storage; readiness is 503 while either does not answer."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.service.config import Settings
from tests.functional.conftest import Client, ServiceServer

pytestmark = pytest.mark.functional


def test_probes_answer_beside_the_content_prefix(client):
    live = client.get("/livez")
    assert live.status == 200 and json.loads(live.body) == {"status": "ok"}
    for path in ("/readyz", "/health"):
        ready = client.get(path)
        assert ready.status == 200
        assert json.loads(ready.body) == {"status": "ok", "database": "ok", "storage": "ok"}
    # Under the prefix they are content paths like any other, never the probes.
    assert client.get("/pulp/content/livez").status == 404


def test_liveness_runs_no_query_and_readiness_one(inprocess_client):
    from pulp_content.service import queries

    before = queries.total()
    for _ in range(5):
        assert inprocess_client.get("/livez").status == 200
    assert queries.total() == before
    for _ in range(3):
        assert inprocess_client.get("/readyz").status == 200
    assert queries.total() == before + 3


def test_readiness_is_503_while_the_storage_cannot_be_written(db, tmp_path: Path):
    """A storage directory that cannot be made (a file in its place): not ready, still
    alive; ready again, with no restart, once it can."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "storage").write_text("not a directory")
    server = ServiceServer(Settings(home=home, database_url=db.database_url))
    with Background(server):
        client = Client(server)
        ready = client.get("/readyz")
        assert ready.status == 503 and ready.headers["Retry-After"] == "5"
        body = {"status": "unavailable", "database": "ok", "storage": "down"}
        assert json.loads(ready.body) == body
        assert client.get("/health").status == 503
        assert client.get("/livez").status == 200
        (home / "storage").unlink()
        assert client.get("/readyz").status == 200
        assert (home / "storage" / "tmp").is_dir()
