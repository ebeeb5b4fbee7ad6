"""Behind a real nginx, with the shipped site configuration: stored files come from
nginx (X-Accel-Redirect), lazy ones stream through the service, guards still apply."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import FileSpec
from tests.functional.conftest import Client

pytestmark = pytest.mark.functional

SITE = Path(__file__).parents[2] / "deploy" / "nginx" / "pulp-content.conf"
STORED = FileSpec("dir/stored.bin", 300_000, 81)
LAZY = FileSpec("lazy.bin", 200_000, 82)


class Port:
    def __init__(self, port: int) -> None:
        self.port = port


def nginx_conf(tmp: Path, listen: int, service: int, storage: Path) -> str:
    """The shipped site, pointed at this test's ports and storage, in a minimal nginx.conf."""
    site = SITE.read_text()
    site = site.replace("server 127.0.0.1:24816;", f"server 127.0.0.1:{service};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    site = site.replace("alias /var/lib/pulp-content/storage/;", f"alias {storage}/;")
    temp = "\n".join(
        f"    {kind}_temp_path {tmp}/{kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    user = "user root;" if os.geteuid() == 0 else ""
    return f"""{user}
daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{}}
http {{
    access_log off;
    default_type application/octet-stream;
{temp}
{site}
}}
"""


@pytest.fixture
def behind_nginx(scenario, tmp_path) -> Iterator[tuple[Client, object]]:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    scenario.publish("eager", [STORED], "immediate")
    scenario.publish("lazy", [LAZY], "on_demand")
    service_port, nginx_port = free_port(), free_port()
    service = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--delegate",
            "nginx",
            "--bind",
            f"127.0.0.1:{service_port}",
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, nginx_port, service_port, scenario.settings.storage_root))
    nginx = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # nginx writes to error.log in tmp_path
    )
    try:
        wait_listening(service_port, service)
        wait_listening(nginx_port, nginx)
        yield Client(Port(nginx_port)), scenario  # type: ignore[arg-type]
    finally:
        for process in (nginx, service):
            process.terminate()
            process.wait(timeout=30)


def test_stored_files_come_from_nginx(behind_nginx):
    client, _ = behind_nginx
    data = STORED.content()
    response = client.get("/pulp/content/eager/dir/stored.bin")
    assert response.status == 200 and response.body == data
    assert response.headers["ETag"] == f'"{hashlib.sha256(data).hexdigest()}"'
    assert response.headers["Repr-Digest"].startswith("sha-256=:")
    assert "X-Accel-Redirect" not in response.headers
    ranged = client.get("/pulp/content/eager/dir/stored.bin", {"Range": "bytes=100-199"})
    assert ranged.status == 206 and ranged.body == data[100:200]
    head = client.head("/pulp/content/eager/dir/stored.bin")
    assert head.status == 200 and head.headers["Content-Length"] == str(len(data))


def test_lazy_files_stream_through_the_service(behind_nginx):
    client, scenario = behind_nginx
    response = client.get("/pulp/content/lazy/lazy.bin")
    assert response.status == 200 and response.body == LAZY.content()
    assert scenario.remote.count("/lazy/lazy.bin") == 1
    # Stored now: the next answer is nginx's own.
    again = client.get("/pulp/content/lazy/lazy.bin")
    assert again.body == LAZY.content() and scenario.remote.count("/lazy/lazy.bin") == 1


def test_the_internal_location_cannot_be_requested(behind_nginx):
    client, _ = behind_nginx
    sha = hashlib.sha256(STORED.content()).hexdigest()
    assert client.get(f"/pulp/storage/artifact/{sha[:2]}/{sha[2:]}").status == 404


def test_guards_still_apply(behind_nginx):
    client, scenario = behind_nginx
    scenario.cli(
        "guard", "create", "token", "--kind", "header", "--header", "X-Token", "--value", "abc"
    )
    scenario.cli("distribution", "update", "eager", "--guard", "token")
    assert client.get("/pulp/content/eager/dir/stored.bin").status == 403
    allowed = client.get("/pulp/content/eager/dir/stored.bin", {"X-Token": "abc"})
    assert allowed.status == 200 and allowed.body == STORED.content()


def test_apache_delegation_sends_x_sendfile(scenario, db):
    """For Apache (mod_xsendfile) the header carries the absolute path, and conditional
    requests are still answered by the service."""
    from dataclasses import replace

    from pulp_content.fixtures.background import Background
    from tests.functional.conftest import ServiceServer

    scenario.publish("eager", [STORED], "immediate")
    server = ServiceServer(replace(db, delegate="apache"))
    with Background(server):
        client = Client(server)
        response = client.get("/pulp/content/eager/dir/stored.bin")
        path = Path(response.headers["X-Sendfile"])
        assert path.is_absolute() and path.read_bytes() == STORED.content()
        assert response.body == b""
        assert response.headers["Content-Type"] == "application/octet-stream"
        etag = response.headers["ETag"]
        assert (
            client.get("/pulp/content/eager/dir/stored.bin", {"If-None-Match": etag}).status == 304
        )
