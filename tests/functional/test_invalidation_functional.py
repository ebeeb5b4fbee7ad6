"""Every worker drops a cached answer within a second of any change that alters it.

Each test runs `pulp-content serve --workers 2` (both databases), makes sure both
workers answer the path from their cache, changes something the way a user or the
service does (a `pulp-content` command in a fresh process, the ORM, a failing upstream),
and then requires that 20 requests in a row get the new answer within BOUND: a worker
still holding the old answer would give it to about half of them. The clock starts when
the change has committed. The last test does the same with two `serve` processes on one
database, standing for two hosts.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.config import Settings
from tests.conftest import Scenario
from tests.functional.conftest import Client, Reply, ServiceProcess
from tests.helpers import eventually, per_process, run_command

pytestmark = pytest.mark.functional

BOUND = 1.0  # seconds: the bound, for every worker on every host
IN_A_ROW = 20
FILE = FileSpec("f.bin", 3000, 1)
OTHER = FileSpec("f.bin", 3000, 2)  # the same path, other bytes


@pytest.fixture
def served(
    db: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[ServiceProcess]:
    monkeypatch.setenv("PULP_CONTENT_LOG_FORMAT", "json")  # `served_from` in each line
    # Where each worker keeps its metrics, read one worker at a time (worker_hits).
    with ServiceProcess(db, 2, metrics_dir=tmp_path) as process:
        yield process


@pytest.fixture
def client(served: ServiceProcess) -> Client:
    return Client(served)


def cli(*args: str) -> str:
    """`pulp-content ARGS` in a fresh process, as a user runs it."""
    done = run_command(*args, env=dict(os.environ))
    assert done.returncode == 0, done.stderr
    return done.stdout


def worker_hits(client: Client) -> dict[int, float]:
    """Resolution cache hits by worker pid, from each worker's own metrics file."""
    assert isinstance(client.server, ServiceProcess) and client.server.metrics_dir
    directory = client.server.metrics_dir
    hits = ("pulp_content_resolution_cache_hits_total", ())
    return {pid: counted.get(hits, 0.0) for pid, counted in per_process(directory).items()}


def warm(
    client: Client,
    check: Callable[[Reply], bool],
    *paths: str,
    method: str = "GET",
    headers: dict[str, str] | None = None,
) -> None:
    """Ask until both workers answer `paths` from their caches, each answer passing `check`."""

    def both_cached() -> bool:
        for path in paths:
            for _ in range(10):
                reply = client.request(method, path, headers)
                assert check(reply), (path, reply.status)
        hits = worker_hits(client)
        return len(hits) == 2 and all(h > 0 for h in hits.values())

    assert eventually(both_cached, timeout=30), "both workers should answer from their caches"


def settles(probe: Callable[[], bool]) -> bool:
    """`probe` passes IN_A_ROW times in a row within BOUND."""
    return eventually(lambda: all(probe() for _ in range(IN_A_ROW)), timeout=BOUND)


def body_is(expected: bytes) -> Callable[[Reply], bool]:
    return lambda reply: reply.status == 200 and reply.complete and reply.body == expected


def status_is(status: int) -> Callable[[Reply], bool]:
    return lambda reply: reply.status == status


def two_publications(scenario: Scenario) -> tuple[str, str]:
    """Repositories `one` and `two`, the same path with other bytes, each published."""
    publications = []
    for name, spec in (("one", FILE), ("two", OTHER)):
        scenario.repository(name, [spec], "immediate")
        publications.append(scenario.cli("publication", "create", "--repository", name).split()[-1])
    return publications[0], publications[1]


def test_distribution_created(scenario, client):
    one, _ = two_publications(scenario)
    path = "/pulp/content/later/f.bin"
    warm(client, status_is(404), path)  # a 404 outside every distribution, cached
    cli("distribution", "create", "later", "--base-path", "later", "--publication", one)
    assert settles(lambda: body_is(FILE.content())(client.get(path)))


def test_distribution_updated_to_a_new_publication(scenario, client):
    one, two = two_publications(scenario)
    scenario.cli("distribution", "create", "d", "--base-path", "d", "--publication", one)
    warm(client, body_is(FILE.content()), "/pulp/content/d/f.bin")
    cli("distribution", "update", "d", "--publication", two)
    assert settles(lambda: body_is(OTHER.content())(client.get("/pulp/content/d/f.bin")))


def test_distribution_deleted(scenario, client):
    one, _ = two_publications(scenario)
    scenario.cli("distribution", "create", "d", "--base-path", "d", "--publication", one)
    warm(client, status_is(200), "/pulp/content/d/f.bin", "/pulp/content/d/")
    cli("distribution", "delete", "d")
    assert settles(lambda: client.get("/pulp/content/d/f.bin").status == 404)
    assert settles(lambda: client.get("/pulp/content/d/").status == 404)


def test_new_repository_version(scenario, client):
    added = FileSpec("new.bin", 100, 3)
    scenario.repository("repo", [FILE], "immediate")
    scenario.cli("distribution", "create", "repo", "--base-path", "repo", "--repository", "repo")
    path = "/pulp/content/repo/new.bin"
    warm(client, status_is(404), path)  # a 404 inside a distribution, cached
    warm(client, lambda r: b"new.bin" not in r.body, "/pulp/content/repo/")
    scenario.remote.add_repository("repo", [FILE, added])
    cli("repository", "sync", "repo")
    assert settles(lambda: body_is(added.content())(client.get(path)))
    assert settles(lambda: b"new.bin" in client.get("/pulp/content/repo/").body)


def test_remote_changed(scenario, client):
    """A pull-through remote pointed elsewhere (streamed: nothing kept)."""
    scenario.remote.add_repository("one", [FILE])
    scenario.remote.add_repository("two", [OTHER])
    base = scenario.remote.base_url
    scenario.cli("remote", "create", "up", "--url", f"{base}/one/", "--policy", "streamed")
    scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "up")
    warm(client, body_is(FILE.content()), "/pulp/content/pt/f.bin")
    cli("remote", "update", "up", "--url", f"{base}/two/")
    assert settles(lambda: body_is(OTHER.content())(client.get("/pulp/content/pt/f.bin")))


def test_remote_artifact_changed(scenario, client):
    """A remote artifact's URL changed in the database (the same bytes elsewhere)."""
    from pulp_content.service.models import RemoteArtifact

    scenario.publish("lazy", [FILE], "streamed")
    scenario.remote.add_repository("mirror", [FILE])
    path = "/pulp/content/lazy/f.bin"
    warm(client, status_is(200), path, method="HEAD")  # HEAD: no download
    RemoteArtifact.objects.update(url=scenario.remote.file_url("mirror", "f.bin"))

    def from_mirror() -> bool:
        before = scenario.remote.count("/mirror/f.bin")
        reply = client.get(path)
        return body_is(FILE.content())(reply) and scenario.remote.count("/mirror/f.bin") > before

    assert settles(from_mirror)


def test_remote_artifact_marked_failed(scenario, client):
    """The first remote sends wrong bytes: the service marks it failed, and no worker
    tries it again (within the cooldown) once the mark is committed."""
    scenario.publish("first", [FILE], "streamed")
    scenario.publish("second", [FILE], "streamed")  # the same content: a second remote artifact
    scenario.remote.set_fault("first", Fault("wrong_bytes", at=100))
    path = "/pulp/content/first/f.bin"
    warm(client, lambda r: r.status == 200, path, method="HEAD")
    failed = client.get(path)
    assert not failed.complete  # the corrupt download was aborted
    assert settles(lambda: body_is(FILE.content())(client.get(path)))


def test_guard_changed(scenario, client):
    from pulp_content.service.models import ContentGuard

    scenario.publish("g", [FILE], "immediate")
    path = "/pulp/content/g/f.bin"
    warm(client, body_is(FILE.content()), path)
    cli("guard", "create", "token", "--kind", "header", "--header", "X-Token", "--value", "a")
    cli("distribution", "update", "g", "--guard", "token")
    assert settles(lambda: client.get(path).status == 403)
    token = {"X-Token": "a"}
    warm(client, body_is(FILE.content()), path, headers=token)
    assert settles(lambda: body_is(FILE.content())(client.get(path, headers=token)))
    changed = {"header": "X-Token", "values": ["b"]}
    ContentGuard.objects.filter(name="token").update(settings=changed)
    assert settles(lambda: client.get(path, headers=token).status == 403)
    assert settles(lambda: body_is(FILE.content())(client.get(path, headers={"X-Token": "b"})))


def served_from(process: ServiceProcess, path: str) -> list[str]:
    lines = []
    for line in process.output().splitlines():
        start = line.find("{")
        if start < 0:
            continue
        try:
            entry = json.loads(line[start:])
        except ValueError:
            continue
        if entry.get("path") == path and entry.get("method") == "GET":
            lines.append(entry["served_from"])
    return lines


def test_artifact_saved(scenario, served, client):
    """Once a lazy artifact is saved, every worker serves it from storage."""
    path = scenario.publish("lazy", [FILE], "on_demand") + "f.bin"
    warm(client, status_is(200), path, method="HEAD")  # the lazy answer, cached
    assert body_is(FILE.content())(client.get(path))  # downloads and saves it

    def from_storage() -> bool:
        before = len(served_from(served, path))
        assert body_is(FILE.content())(client.get(path))
        assert eventually(lambda: len(served_from(served, path)) > before)
        # A small file: read from storage once, then from memory.
        return served_from(served, path)[-1] in ("storage", "memory")

    assert settles(from_storage)
    assert scenario.remote.count("/lazy/f.bin") == 1


def test_two_hosts(scenario, db, tmp_path):
    """Two `serve` processes on one database (two hosts): a change reaches both."""
    one, two = two_publications(scenario)
    scenario.cli("distribution", "create", "d", "--base-path", "d", "--publication", one)
    path = "/pulp/content/d/f.bin"
    dirs = tmp_path / "first", tmp_path / "second"
    for directory in dirs:
        directory.mkdir()
    with (
        ServiceProcess(db, 2, metrics_dir=dirs[0]) as first,
        ServiceProcess(db, 2, metrics_dir=dirs[1]) as second,
    ):
        hosts = [Client(first), Client(second)]
        for host in hosts:
            warm(host, body_is(FILE.content()), path)
        cli("distribution", "update", "d", "--publication", two)
        assert settles(lambda: all(body_is(OTHER.content())(h.get(path)) for h in hosts))


@pytest.mark.postgres_only  # SQLite is polled: there is no listening connection to lose
def test_the_listening_connection_lost(scenario, inprocess_client, db):
    """PostgreSQL: when the connection that listens for changes is cut, the cache is off
    until it is back (nothing is served that a missed notification would have dropped),
    and a change made meanwhile is seen once it is back."""
    from django.db import connection

    from pulp_content.service.keys import LOCATOR
    from pulp_content.service.models import Distribution
    from tests.conftest import _admin_or_skip

    one, _ = two_publications(scenario)
    scenario.cli("distribution", "create", "d", "--base-path", "d", "--publication", one)
    cache = inprocess_client.server.app[LOCATOR].cache
    path = "/pulp/content/d/f.bin"
    # Asked until kept: an answer computed across a change (the create's notification,
    # late on a busy machine) is not kept, and only a new request puts it there.
    assert eventually(
        lambda: (
            cache.live and inprocess_client.get(path).status == 200 and cache.get(path) is not None
        )
    )
    name = connection.settings_dict["NAME"]
    admin = _admin_or_skip()
    try:
        with admin.cursor() as cur:
            # No new session until we say so: the listener cannot come back meanwhile
            # (sessions already open, the service's and this test's, go on).
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = %s AND application_name = 'pulp-content invalidation'",
                (name,),
            )
            assert cur.fetchall() == [(True,)]
            assert eventually(lambda: not cache.live)
            Distribution.objects.filter(name="d").delete()  # its notification goes nowhere
            assert inprocess_client.get(path).status == 404  # asked the database
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        assert eventually(lambda: cache.live)  # listening again
        assert settles(lambda: inprocess_client.get(path).status == 404)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        admin.close()
