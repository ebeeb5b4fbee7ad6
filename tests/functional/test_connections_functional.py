"""PULP_CONTENT_DATABASE_CONNECTIONS bounds what each worker of `serve --workers 2` holds
on the PostgreSQL server, under many concurrent requests (stored and lazy, so saves and
download claims take their connections too, beside the cache's invalidation watcher).
Each server-side connection is tied to the worker process that owns its client socket
(/proc), not to a name it gives itself."""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.config import Settings
from tests.functional.conftest import ServiceProcess
from tests.helpers import http_status, run_command

pytestmark = [pytest.mark.functional, pytest.mark.postgres_only]

STORED = [FileSpec(f"s{i}.bin", 20_000 + i, 100 + i) for i in range(8)]
LAZY = [FileSpec(f"l{i}.bin", 50_000 + i, 120 + i) for i in range(24)]


def socket_ports(pid: int) -> set[int]:
    """The local ports of the TCP sockets process `pid` has open."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except FileNotFoundError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


class Sampler:
    """Samples the database's connections until stopped; keeps each worker's most."""

    def __init__(self, admin: object, dbname: str, pids: list[int]) -> None:
        self.admin, self.dbname, self.pids = admin, dbname, pids
        self.most: Counter[int] = Counter()
        self.unowned = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def sample(self) -> None:
        with self.admin.cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(
                "SELECT client_port FROM pg_stat_activity WHERE datname = %s", (self.dbname,)
            )
            ports = {row[0] for row in cur.fetchall()}
        owners = {pid: socket_ports(pid) for pid in self.pids}
        for pid, owned in owners.items():
            self.most[pid] = max(self.most[pid], len(ports & owned))
        self.unowned = max(self.unowned, len(ports - set().union(*owners.values())))

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.sample()

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def get(port: int, path: str) -> int:
    return http_status(port, path, timeout=60)


@pytest.fixture
def database(upstream, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A database of its own (only the service connects to it), with a stored and an
    on_demand distribution."""
    from tests.conftest import throwaway_postgres

    with throwaway_postgres("pulp_content_bound") as url:
        env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_DATABASE_URL": url}
        for name, files, policy in (("s", STORED, "immediate"), ("l", LAZY, "on_demand")):
            manifest = upstream.add_repository(name, files)
            for args in (
                ["migrate"],
                ["remote", "create", name, "--url", manifest, "--policy", policy],
                ["repository", "create", name, "--remote", name],
                ["repository", "sync", name],
                ["distribution", "create", name, "--base-path", name, "--repository", name],
            ):
                done = run_command(*args, env=env)
                assert done.returncode == 0, done.stderr
        yield url, env


@pytest.mark.parametrize("bound", [4, 6])
def test_each_worker_holds_at_most_the_bound(database, monkeypatch, bound):
    from tests.conftest import _admin_or_skip

    url, env = database
    monkeypatch.setenv("PULP_CONTENT_DATABASE_CONNECTIONS", str(bound))
    home = Path(env["PULP_CONTENT_HOME"])
    paths = [f"/pulp/content/s/{f.relative_path}" for f in STORED] * 12
    paths += [f"/pulp/content/l/{f.relative_path}" for f in LAZY]
    admin = _admin_or_skip()
    try:
        with ServiceProcess(Settings(home=home, database_url=url), workers=2) as process:
            pids = process.worker_pids()
            with (
                Sampler(admin, url.rsplit("/", 1)[1], pids) as sampler,
                ThreadPoolExecutor(48) as pool,
            ):
                for _ in range(3):
                    statuses = list(pool.map(lambda path: get(process.port, path), paths))
                    assert set(statuses) == {200}
    finally:
        admin.close()
    assert sampler.unowned == 0  # every connection was one of the workers'
    assert set(sampler.most) == set(pids)
    assert all(count <= bound for count in sampler.most.values()), sampler.most
    # The load was enough to reach the bound: without it, a worker would go past it.
    assert max(sampler.most.values()) == bound, sampler.most
