"""The merged service on a real socket, and a plain HTTP client.

By default the service runs in the test process, on its own thread and loop, one per
test. With PULP_CONTENT_TEST_WORKERS=N (N > 1; `nox` sets 2 for PostgreSQL) the `client`
fixture talks to `pulp-content serve --workers N` instead: N gunicorn worker processes
on one port, on the run's database and storage, as a deployment runs it. On PostgreSQL
one such service serves every test of a module (starting gunicorn per test took most
of the run): `db` resets the data between tests, and a test is over only once the
service is idle (`ServiceProcess.idle`), so nothing it still downloads or saves lands
in the next test's data. On SQLite each test starts its own.

Tests that need a service of their own still start one per test (`running_service`,
`ServiceProcess`, `ServiceServer`, or `serve` by hand): those that read its log or its
per-process counters (accesslog, operations, serve_command, secrets, disk_full, legacy),
give it other options, environment, storage or database (guards, legacy, nginx,
disk_full, database, database_file), stop it or cut its database
(disk_full, database, operations), or test what it does at start-up (operations,
durability); storage_check and upstream_tls start one in the middle of a single test.
`inprocess_client` and `second_worker` run in this process, one per test.

Tests stay synchronous: they set up data through the CLI and the ORM, and talk HTTP
with http.client, which reports an aborted transfer as IncompleteRead.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import logging
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import CLI, free_port
from pulp_content.fixtures.remote import bound_port
from pulp_content.service.config import Settings
from tests.helpers import eventually


class Errors(logging.Handler):
    """Keeps what aiohttp logs at ERROR: an exception a handler let escape."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def report(self) -> str:
        return "\n".join(logging.Formatter().format(r) for r in self.records)


class ServiceServer:
    """create_app(settings) behind an AppRunner on 127.0.0.1 and a free port. As with a
    process, an exception that escapes a handler fails the test at stop."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None
        self._errors = Errors()

    async def start(self) -> None:
        logging.getLogger("aiohttp.server").addHandler(self._errors)
        from pulp_content.service.accesslog import RUNNER_OPTIONS
        from pulp_content.service.app import (
            create_app,
        )  # models import only once Django is configured

        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, **RUNNER_OPTIONS)  # type: ignore[arg-type]
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = bound_port(site)

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()
        logging.getLogger("aiohttp.server").removeHandler(self._errors)
        assert not self._errors.records, self._errors.report()
        # Nothing the service started may outlive it: downloads, followers, saves.
        await asyncio.sleep(0)
        leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        assert not leftover, leftover

    def descriptors(self) -> list[str]:
        """What the open file descriptors of the process serving requests point to."""
        return _descriptors(os.getpid())


WORKERS = int(os.environ.get("PULP_CONTENT_TEST_WORKERS", "1"))


class ServiceProcess:
    """`pulp-content serve --workers N` on 127.0.0.1 and a free port, in the settings'
    home and database; its output goes to a log file, checked for tracebacks at stop."""

    app = None  # nothing to introspect in another process

    def __init__(
        self,
        settings: Settings,
        workers: int,
        options: tuple[str, ...] = (),
        metrics_dir: Path | None = None,
    ) -> None:
        self.settings = settings
        self.workers = workers
        self.options = options  # more `serve` options
        # PROMETHEUS_MULTIPROC_DIR for this service alone (its workers' own files can be
        # read there one worker at a time: tests.helpers.per_process).
        self.metrics_dir = metrics_dir
        self.port = free_port()
        self._log = Path(tempfile.mkstemp(prefix="pulp-content-serve-", suffix=".log")[1])
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ServiceProcess:
        env = dict(
            os.environ,
            PULP_CONTENT_HOME=str(self.settings.home),
            PULP_CONTENT_DATABASE_URL=self.settings.database_url,
        )
        if self.metrics_dir is not None:
            env["PROMETHEUS_MULTIPROC_DIR"] = str(self.metrics_dir)
        command = [*CLI, "serve"]
        command += ["--workers", str(self.workers), "--bind", f"127.0.0.1:{self.port}"]
        command += self.options
        with self._log.open("wb") as out:
            self._process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        if not eventually(self._healthy, timeout=60):
            self.__exit__()
            raise AssertionError(f"serve did not come up:\n{self.output()}")
        return self

    def __exit__(self, *exc: object) -> None:
        output = self.end()
        assert "Traceback" not in output, output

    def end(self) -> str:
        """SIGTERM (SIGKILL after 60 s); its whole output."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        output = self.output()
        self._log.unlink(missing_ok=True)
        return output

    @contextlib.contextmanager
    def one_test(self) -> Iterator[None]:
        """A test's turn on a service that outlives it: on leaving, wait until the
        service is idle, and fail on a traceback it logged meanwhile or on its exit."""
        start = self._log.stat().st_size
        yield
        self.idle()
        assert self._process is not None
        logged = self._log.read_bytes()[start:].decode(errors="replace")
        assert self._process.poll() is None, f"serve exited during the test:\n{logged}"
        assert "Traceback" not in logged, logged

    def idle(self, timeout: float = 60.0) -> None:
        """Wait until no download is in flight in any worker: each holds its claim, a
        PostgreSQL advisory lock, until its file is placed and its rows committed (or it
        failed, and marked its remote artifact failed), so none left means nothing more
        will be written to the database or storage (service.shared, SharedDownload.run)."""
        if eventually(lambda: not advisory_locks(), timeout=timeout):
            return
        raise AssertionError(
            f"downloads still in flight {timeout:.0f} s after the test (advisory locks held "
            f"by (pid, application): {advisory_locks()}); its output:\n{self.output()}"
        )

    def _healthy(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            return True  # exited: __enter__ reports it
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/health")
            return conn.getresponse().status == 200
        except OSError:
            return False
        finally:
            conn.close()

    def output(self) -> str:
        return self._log.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        assert self._process is not None
        pid = self._process.pid
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]

    def serving_pids(self) -> list[int]:
        """The processes that answer requests: the workers, or the one process."""
        assert self._process is not None
        return self.worker_pids() if self.workers > 1 else [self._process.pid]

    def descriptors(self) -> list[str]:
        """What the open file descriptors of the serving processes point to, together."""
        return [target for pid in self.serving_pids() for target in _descriptors(pid)]

    def stop(self, timeout: float) -> int:
        """SIGTERM; the exit status, or an AssertionError if it takes over `timeout` s."""
        assert self._process is not None
        self._process.send_signal(signal.SIGTERM)
        try:
            return self._process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running {timeout} s after SIGTERM") from None


ADVISORY_LOCKS = """
    SELECT l.pid, a.application_name FROM pg_locks l LEFT JOIN pg_stat_activity a USING (pid)
    WHERE l.locktype = 'advisory'
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
"""


def advisory_locks() -> list[tuple[int, str]]:
    """The advisory locks held (or waited for) in the test database, by any session."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(ADVISORY_LOCKS)
        return list(cursor.fetchall())


def _descriptors(pid: int) -> list[str]:
    targets = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        with contextlib.suppress(FileNotFoundError):  # closed while we looked
            targets.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
    return targets


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool  # False: the connection ended before Content-Length was reached


class Client:
    """GET and HEAD against the service; never follows redirects (each request counts)."""

    def __init__(self, server: ServiceServer | ServiceProcess) -> None:
        self.server = server
        self.sent = 0

    def request(self, method: str, path: str, headers: dict[str, str] | None = None) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        self.sent += 1
        try:
            conn.request(method, path, headers=headers or {})
            response = conn.getresponse()
            try:
                body, complete = response.read(), True
            except http.client.IncompleteRead as exc:
                body, complete = exc.partial, False
            return Reply(response.status, response.headers, body, complete)
        finally:
            conn.close()

    def get(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("GET", path, headers)

    def head(self, path: str, headers: dict[str, str] | None = None) -> Reply:
        return self.request("HEAD", path, headers)

    def last_queries(self) -> int:
        """Queries of the last request, once its handler has finished (a streamed body
        reaches the client before the handler returns)."""
        from pulp_content.service.keys import QUERY_LOG

        assert self.server.app is not None, "queries are counted in the test process only"
        log = self.server.app[QUERY_LOG]
        assert eventually(lambda: len(log) >= self.sent)
        return log[-1][2]


@contextlib.contextmanager
def running_service(settings: Settings) -> Iterator[Client]:
    """The service started on `settings`: in this process, or `serve --workers N`."""
    if WORKERS > 1:
        with ServiceProcess(settings, WORKERS) as process:
            yield Client(process)
        return
    server = ServiceServer(settings)
    with Background(server):
        yield Client(server)


class ModuleService:
    """The `serve --workers N` a module's tests share, started on first use; a service
    that does not go idle after a test is stopped, and the next test gets a new one."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.process: ServiceProcess | None = None

    @contextlib.contextmanager
    def one_test(self) -> Iterator[Client]:
        if self.process is None:
            self.process = ServiceProcess(self.settings, WORKERS).__enter__()
        try:
            with self.process.one_test():
                yield Client(self.process)
        except BaseException:
            self.process, broken = None, self.process
            broken.end()
            raise

    def close(self) -> None:
        if self.process is not None:
            self.process.__exit__()


@pytest.fixture(scope="module")
def module_service(settings: Settings) -> Iterator[ModuleService | None]:
    """On PostgreSQL with N > 1 workers, the module's shared service (see above); else
    None: each test starts its own."""
    if WORKERS <= 1 or settings.is_sqlite:
        yield None
        return
    shared = ModuleService(settings)
    try:
        yield shared
    finally:
        shared.close()


@pytest.fixture
def client(module_service: ModuleService | None, db: Settings) -> Iterator[Client]:
    """A client of the service: in this process, or `serve --workers N` (see above)."""
    if module_service is None:
        with running_service(db) as started:
            yield started
        return
    with module_service.one_test() as shared:
        yield shared


@pytest.fixture
def inprocess_client(db: Settings) -> Iterator[Client]:
    """A client of the service in this process, for tests that look inside it."""
    server = ServiceServer(db)
    with Background(server):
        yield Client(server)


@pytest.fixture
def second_worker(db: Settings) -> Iterator[Client]:
    """Another service on the same database and storage: a second worker process as far
    as the download locks can tell (flock is per open file; on PostgreSQL each service
    holds its advisory locks on a connection of its own)."""
    server = ServiceServer(db)
    with Background(server):
        yield Client(server)
