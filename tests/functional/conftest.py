"""The merged service on a real socket, on its own thread and loop, and a plain HTTP client.

Tests stay synchronous: they set up data through the CLI and the ORM, and talk HTTP
with http.client, which reports an aborted transfer as IncompleteRead.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from aiohttp import web

from fixtures.background import Background
from fixtures.remote import bound_port
from service.config import Settings
from tests.helpers import eventually


class ServiceServer:
    """create_app(settings) behind an AppRunner on 127.0.0.1 and a free port."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.port = 0
        self.app: web.Application | None = None
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        from service.accesslog import RUNNER_OPTIONS
        from service.app import create_app  # models import only once Django is configured

        self.app = create_app(self.settings)
        self._runner = web.AppRunner(self.app, **RUNNER_OPTIONS)  # type: ignore[arg-type]
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = bound_port(site)

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes
    complete: bool  # False: the connection ended before Content-Length was reached


class Client:
    """GET and HEAD against the service; never follows redirects (each request counts)."""

    def __init__(self, server: ServiceServer) -> None:
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
        from service.keys import QUERY_LOG

        assert self.server.app is not None
        log = self.server.app[QUERY_LOG]
        assert eventually(lambda: len(log) >= self.sent)
        return log[-1][2]


@pytest.fixture
def client(db: Settings) -> Iterator[Client]:
    server = ServiceServer(db)
    with Background(server):
        yield Client(server)
