"""Test set-up: one database per run (SQLite, or PostgreSQL with its own throw-away
database), a clean database and storage per test, and the fixture remote on a thread.

PULP_CONTENT_TEST_DATABASE=postgres selects PostgreSQL (PULP_CONTENT_TEST_POSTGRES gives
the server, default postgres://postgres@127.0.0.1:5432/postgres). With CI set, a missing
PostgreSQL fails the run instead of skipping it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import FixtureRemote
from pulp_content.service.config import Settings, configure_django, connect_params

POSTGRES = os.environ.get(
    "PULP_CONTENT_TEST_POSTGRES", "postgres://postgres@127.0.0.1:5432/postgres"
)
_RUN: dict[str, object] = {}


def _postgres_admin() -> object:
    """A connection to the PostgreSQL server, or an error message."""
    import psycopg2

    try:
        conn = psycopg2.connect(**connect_params(POSTGRES))
    except psycopg2.OperationalError as exc:
        return f"PostgreSQL is not reachable at {POSTGRES}: {str(exc).strip()}"
    conn.autocommit = True
    return conn


def pytest_configure(config: pytest.Config) -> None:
    """Pick the run's database and configure Django before any test module imports models."""
    kind = os.environ.get("PULP_CONTENT_TEST_DATABASE", "sqlite")
    home = Path(tempfile.mkdtemp(prefix="pulp-content-test-"))
    _RUN["home"] = home
    if kind == "sqlite":
        url = f"sqlite:///{home / 'test.sqlite3'}"
    elif kind == "postgres":
        admin = _postgres_admin()
        if isinstance(admin, str):
            if os.environ.get("CI"):
                pytest.exit(admin, returncode=1)
            _RUN["skip"] = admin
            url = f"sqlite:///{home / 'unused.sqlite3'}"
        else:
            name = f"pulp_content_test_{uuid.uuid4().hex[:12]}"
            with admin.cursor() as cur:  # type: ignore[attr-defined]
                cur.execute(f'CREATE DATABASE "{name}"')
            _RUN["admin"], _RUN["dbname"] = admin, name
            url = f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    else:
        raise pytest.UsageError(
            f"PULP_CONTENT_TEST_DATABASE must be sqlite or postgres, not {kind!r}"
        )
    _RUN["settings"] = Settings(home=home, database_url=url)
    configure_django(_RUN["settings"])  # type: ignore[arg-type]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "skip" in _RUN:
        marker = pytest.mark.skip(reason=str(_RUN["skip"]))
        for item in items:
            item.add_marker(marker)
    if os.environ.get("PULP_CONTENT_TEST_DATABASE", "sqlite") != "postgres":
        # Not a missing server (that fails under CI): these test a server's connections,
        # which SQLite has none of. The PostgreSQL run runs them.
        sqlite = pytest.mark.skip(reason="PostgreSQL only: SQLite has no server connections")
        for item in items:
            if item.get_closest_marker("postgres_only"):
                item.add_marker(sqlite)


def pytest_report_header(config: pytest.Config) -> str:
    settings = _RUN.get("settings")
    return f"pulp-content database: {settings.database_url if settings else '?'}"  # type: ignore[attr-defined]


def pytest_unconfigure(config: pytest.Config) -> None:
    if "dbname" in _RUN:
        from django.db import connections

        connections.close_all()
        with _RUN["admin"].cursor() as cur:  # type: ignore[attr-defined]
            cur.execute(f'DROP DATABASE IF EXISTS "{_RUN["dbname"]}" WITH (FORCE)')
        _RUN["admin"].close()  # type: ignore[attr-defined]
    shutil.rmtree(_RUN.get("home", ""), ignore_errors=True)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def settings() -> Settings:
    """The run's settings; the schema is migrated once."""
    from pulp_content.service.database import migrate

    current: Settings = _RUN["settings"]  # type: ignore[assignment]
    migrate(current)
    return current


@pytest.fixture
def db(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """A clean database and storage for one test; CLI commands see the same settings."""
    from django.core.management import call_command

    # TRUNCATE (PostgreSQL) or DELETE (SQLite) of the app's tables; the migrations and the
    # key file stay. On PostgreSQL the ids go on from the last test's: the `serve` that
    # outlives a test (tests/functional/conftest.py) knows a saved download and an
    # upstream session by row id for a while, and must not take new rows for them.
    call_command("flush", interactive=False, verbosity=0, reset_sequences=settings.is_sqlite)
    shutil.rmtree(settings.storage_root, ignore_errors=True)
    monkeypatch.setenv("PULP_CONTENT_HOME", str(settings.home))
    monkeypatch.setenv("PULP_CONTENT_DATABASE_URL", settings.database_url)
    yield settings


@pytest.fixture(scope="session")
def live_remote() -> Iterator[FixtureRemote]:
    """The fixture remote, started once per run on its own thread."""
    remote = FixtureRemote()
    with Background(remote):
        yield remote


@pytest.fixture
def upstream(live_remote: FixtureRemote) -> Iterator[FixtureRemote]:
    """The fixture remote with no faults and zeroed counts."""
    live_remote.reset()
    yield live_remote
    live_remote.reset()


@pytest.fixture
def cli(db: Settings) -> CliRunner:
    return CliRunner()


def run_cli(runner: CliRunner, *args: str) -> str:
    """Invoke `pulp-content ARGS`; fails the test with the output if it did not exit 0."""
    from pulp_content.cli.main import cli

    result = runner.invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def storage_files(settings: Settings) -> list[Path]:
    root = settings.storage_root / "artifact"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


class Scenario:
    """Builds remotes, repositories and distributions through the CLI, as a user would."""

    def __init__(self, runner: CliRunner, remote: FixtureRemote, settings: Settings) -> None:
        self.runner = runner
        self.remote = remote
        self.settings = settings

    def cli(self, *args: str) -> str:
        return run_cli(self.runner, *args)

    def repository(self, name: str, files: list, policy: str = "on_demand") -> str:  # type: ignore[type-arg]
        """Generated files served by the fixture remote, synced into repository `name`."""
        url = self.remote.add_repository(name, files)
        self.sync_from(
            name, url, "--policy", policy, "--sock-read-timeout", "2", "--connect-timeout", "2"
        )
        return url

    def sync_from(self, name: str, url: str, *remote_options: str) -> None:
        """Remote `name` at `url` (with these `remote create` options) and repository
        `name` synced from it."""
        self.cli("remote", "create", name, "--url", url, *remote_options)
        self.cli("repository", "create", name, "--remote", name)
        self.cli("repository", "sync", name)

    def publish(
        self,
        name: str,
        files: list,
        policy: str = "on_demand",  # type: ignore[type-arg]
        base_path: str | None = None,
    ) -> str:
        """Sync, publish and distribute; returns the content URL path of the distribution."""
        self.repository(name, files, policy)
        publication = self.cli("publication", "create", "--repository", name).split()[-1]
        base = base_path or name
        self.cli("distribution", "create", name, "--base-path", base, "--publication", publication)
        return f"{self.settings.content_prefix}{base}/"


@pytest.fixture
def scenario(cli: CliRunner, upstream: FixtureRemote, db: Settings) -> Scenario:
    return Scenario(cli, upstream, db)


def _admin_or_skip() -> Any:
    admin = _postgres_admin()
    if isinstance(admin, str):
        if os.environ.get("CI"):
            pytest.fail(admin)
        pytest.skip(admin)
    return admin


def drop_postgres(url: str) -> None:
    """Drop the database of `url`, even while a service is connected to it."""
    admin = _admin_or_skip()
    try:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        admin.close()


@contextlib.contextmanager
def throwaway_postgres(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards. Skips without a
    server, fails with CI set."""
    admin = _admin_or_skip()
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    try:
        with admin.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        admin.close()
    url = f"{POSTGRES.rsplit('/', 1)[0]}/{name}"
    try:
        yield url
    finally:
        drop_postgres(url)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[Any]:
    """SeaweedFS with its S3 gateway on loopback, started once per run (seconds to
    start). Skipped when it cannot start; with CI set, that fails the run instead."""
    from tests.s3server import S3Server

    server = S3Server(Path(tempfile.mkdtemp(prefix="pulp-content-s3-")))
    try:
        server.start()
    except Exception as exc:
        shutil.rmtree(server.workdir, ignore_errors=True)
        if os.environ.get("CI"):
            pytest.fail(f"SeaweedFS did not start: {exc}")
        pytest.skip(f"SeaweedFS did not start: {exc}")
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.workdir, ignore_errors=True)


@pytest.fixture
def s3_db(db: Settings, s3_server: Any, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """`db` with storage in the test bucket, under a prefix of this test's own; the AWS
    variables and PULP_CONTENT_STORAGE_URL are set for CLI commands too."""
    import dataclasses

    url = f"s3://{s3_server.bucket}/test-{uuid.uuid4().hex[:12]}"
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PULP_CONTENT_STORAGE_URL", url)
    return dataclasses.replace(db, storage_url=url)
