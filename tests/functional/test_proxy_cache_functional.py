"""A caching nginx (`proxy_cache`) in front of the service, as README's "Caching
headers" shows: it keeps what Cache-Control lets it keep, and nothing of a guarded
distribution's."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import free_port, wait_listening
from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.keys import QUERY_LOG
from tests.functional.conftest import Client
from tests.functional.test_nginx_functional import Port, nginx_binary

pytestmark = pytest.mark.functional

PACKAGE = FileSpec("pkg.bin", 4000, 91)
# The README's example, with this test's ports and directories.
LOCATION = """
    proxy_cache_path {tmp}/cache keys_zone=content:1m;
    server {{
        listen 127.0.0.1:{listen};
        location /pulp/content/ {{
            proxy_pass http://127.0.0.1:{service};
            proxy_cache content;
            proxy_cache_revalidate on;
            proxy_cache_use_stale error timeout updating;
            proxy_cache_lock on;
            add_header X-Cache-Status $upstream_cache_status always;
        }}
    }}
"""


@contextlib.contextmanager
def caching_nginx(tmp: Path, service: int) -> Iterator[Client]:
    listen = free_port()
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    conf = tmp / "nginx.conf"
    conf.write_text(
        f"{user}\ndaemon off;\nworker_processes 1;\npid {tmp}/nginx.pid;\n"
        f"error_log {tmp}/error.log warn;\nevents {{}}\nhttp {{\n    access_log off;\n{temp}\n"
        + LOCATION.format(tmp=tmp, listen=listen, service=service)
        + "}\n"
    )
    nginx = subprocess.Popen(
        [nginx_binary(), "-p", str(tmp), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(listen, nginx)
        yield Client(Port(listen))  # type: ignore[arg-type]
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def asked(client: Client, path: str) -> int:
    """Requests for `path` the service in this process answered."""
    assert client.server.app is not None
    return sum(1 for _, p, _ in client.server.app[QUERY_LOG] if p == path)


def test_nginx_keeps_a_publication_s_files_and_nothing_guarded(
    scenario, inprocess_client, tmp_path
):
    base = scenario.publish("pub", [PACKAGE], "immediate")
    scenario.publish("secret", [FileSpec("s.bin", 100, 92)], "immediate")
    scenario.cli("guard", "create", "token", "--kind", "header", "--header", "X-Token",
                 "--value", "abc")  # fmt: skip
    scenario.cli("distribution", "update", "secret", "--guard", "token")
    with caching_nginx(tmp_path, inprocess_client.server.port) as nginx:
        first = nginx.get(base + "pkg.bin")
        second = nginx.get(base + "pkg.bin")
        assert first.body == second.body == PACKAGE.content()
        assert (first.headers["X-Cache-Status"], second.headers["X-Cache-Status"]) == (
            "MISS",
            "HIT",
        )
        assert asked(inprocess_client, base + "pkg.bin") == 1

        secret = "/pulp/content/secret/s.bin"
        for _ in range(2):
            reply = nginx.get(secret, {"X-Token": "abc"})
            assert reply.status == 200 and reply.headers["Cache-Control"].startswith("private")
        assert asked(inprocess_client, secret) == 2  # never answered from nginx's cache
        assert nginx.get(secret).status == 403  # nothing kept for another client
