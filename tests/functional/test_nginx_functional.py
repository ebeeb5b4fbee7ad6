"""Behind a real nginx, with the shipped site configuration: stored files come from
nginx (X-Accel-Redirect), lazy ones stream through the service, guards still apply, and
x509 guards see the TLS client certificates nginx verified, never a header a client sent."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
import trustme
from aiohttp import web

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import FileSpec, bound_port
from tests.certs import SERVER_AUTH, ca_pem, leaf_pem, pem_of, signed_by, write_key_and_chain
from tests.functional.conftest import Client, ServiceProcess
from tests.helpers import curl, eventually

pytestmark = pytest.mark.functional

SITE = Path(__file__).parents[2] / "deploy" / "nginx" / "pulp-content.conf"
LOCATIONS = SITE.with_name("pulp-content-locations.conf")
INSTALLED_LOCATIONS = "/etc/nginx/snippets/pulp-content-locations.conf"
STORED = FileSpec("dir/stored.bin", 300_000, 81)
LAZY = FileSpec("lazy.bin", 200_000, 82)


class Port:
    def __init__(self, port: int) -> None:
        self.port = port


@dataclass
class Tls:
    """The site's TLS files: a server certificate for 127.0.0.1 and the client CA."""

    port: int
    directory: Path
    server_ca: trustme.CA
    client_ca: trustme.CA

    @classmethod
    def make(cls, directory: Path) -> Tls:
        directory.mkdir()
        server_ca, client_ca = trustme.CA(), trustme.CA()
        server = server_ca.issue_cert("127.0.0.1")
        server.private_key_pem.write_to_path(str(directory / "server.key"))
        for blob in server.cert_chain_pems:
            blob.write_to_path(str(directory / "server.pem"), append=True)
        client_ca.cert_pem.write_to_path(str(directory / "client-ca.pem"))
        server_ca.cert_pem.write_to_path(str(directory / "server-ca.pem"))
        return cls(free_port(), directory, server_ca, client_ca)

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"

    def curl(self, path: str, *options: str) -> tuple[int, bytes]:
        """GET over TLS with curl, trusting the server's CA."""
        reply = curl(self.url(path), "--cacert", str(self.directory / "server-ca.pem"), *options)
        return reply.status, reply.body


def nginx_conf(
    tmp: Path, listen: int, service: int | Path, storage: Path, tls: Tls, more: str = ""
) -> str:
    """The shipped site and its locations (and `more` of them), pointed at this test's
    ports (or the service's unix socket), storage and TLS files, in a minimal nginx.conf."""
    locations = LOCATIONS.read_text() + more
    locations = locations.replace("alias /var/lib/pulp-content/storage/;", f"alias {storage}/;")
    (tmp / "locations.conf").write_text(locations)
    upstream = f"unix:{service}" if isinstance(service, Path) else f"127.0.0.1:{service}"
    site = SITE.read_text()
    assert site.count(f"include {INSTALLED_LOCATIONS};") == 2  # the HTTP and TLS servers
    site = site.replace(INSTALLED_LOCATIONS, str(tmp / "locations.conf"))
    site = site.replace("server 127.0.0.1:24816;", f"server {upstream};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{listen};")
    site = site.replace("listen 443 ssl;", f"listen 127.0.0.1:{tls.port} ssl;")
    site = site.replace("/etc/pulp-content/tls/", f"{tls.directory}/")
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


def nginx_binary() -> str:
    binary = shutil.which("nginx") or (
        "/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None
    )
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is not installed (.ci/run installs it)")
        pytest.skip("nginx is not installed")
    return binary


@contextlib.contextmanager
def running_nginx(
    tmp_path: Path, service: int | Path, storage: Path, more: str = ""
) -> Iterator[tuple[int, Tls]]:
    """nginx with the shipped site (and `more` locations) in front of `service` (a port or
    a unix socket); yields its HTTP port and its TLS side."""
    binary = nginx_binary()
    port = free_port()
    tls = Tls.make(tmp_path / "tls")
    conf = tmp_path / "nginx.conf"
    conf.write_text(nginx_conf(tmp_path, port, service, storage, tls, more))
    nginx = subprocess.Popen(
        [binary, "-p", str(tmp_path), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,  # nginx writes to error.log in tmp_path
    )
    try:
        wait_listening(port, nginx)
        wait_listening(tls.port, nginx)
        yield port, tls
    finally:
        nginx.terminate()
        nginx.wait(timeout=30)


def start_service(*bind: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*CLI, "serve", "--delegate", "nginx", *bind],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.fixture
def behind_nginx(scenario, tmp_path) -> Iterator[tuple[Client, object, Tls]]:
    nginx_binary()
    scenario.publish("eager", [STORED], "immediate")
    scenario.publish("lazy", [LAZY], "on_demand")
    service_port = free_port()
    service = start_service("--bind", f"127.0.0.1:{service_port}")
    storage = scenario.settings.storage_root
    try:
        with running_nginx(tmp_path, service_port, storage) as (nginx_port, tls):
            wait_listening(service_port, service)
            yield Client(Port(nginx_port)), scenario, tls  # type: ignore[arg-type]
    finally:
        service.terminate()
        service.wait(timeout=30)


def test_stored_files_come_from_nginx(behind_nginx):
    client, _, _ = behind_nginx
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
    client, scenario, _ = behind_nginx
    response = client.get("/pulp/content/lazy/lazy.bin")
    assert response.status == 200 and response.body == LAZY.content()
    assert scenario.remote.count("/lazy/lazy.bin") == 1
    # Stored now: the next answer is nginx's own.
    again = client.get("/pulp/content/lazy/lazy.bin")
    assert again.body == LAZY.content() and scenario.remote.count("/lazy/lazy.bin") == 1


def test_the_internal_location_cannot_be_requested(behind_nginx):
    client, _, _ = behind_nginx
    sha = hashlib.sha256(STORED.content()).hexdigest()
    assert client.get(f"/pulp/storage/artifact/{sha[:2]}/{sha[2:]}").status == 404


def test_guards_still_apply(behind_nginx):
    client, scenario, _ = behind_nginx
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


def test_x509_guard_with_real_tls_client_certificates(behind_nginx, tmp_path):
    """nginx verifies the client certificate in the TLS handshake and passes it on; a
    certificate a client writes into a header itself never reaches the service."""
    client, scenario, tls = behind_nginx
    intermediate = tls.client_ca.create_child_ca()
    (tmp_path / "intermediates.pem").write_text(ca_pem(intermediate))
    scenario.cli(
        "guard", "create", "certs", "--kind", "x509",
        "--ca-cert", str(tls.directory / "client-ca.pem"),
        "--intermediates", str(tmp_path / "intermediates.pem"),
    )  # fmt: skip
    scenario.cli("distribution", "update", "eager", "--guard", "certs")
    path, data = "/pulp/content/eager/dir/stored.bin", STORED.content()

    alice = tls.client_ca.issue_cert("alice@example.com")
    key, cert = write_key_and_chain(
        tmp_path, "alice", alice.private_key_pem.bytes(), leaf_pem(alice)
    )
    assert tls.curl(path, "--cert", str(cert), "--key", str(key)) == (200, data)

    # Issued by an intermediate: curl sends the chain, nginx verifies it and passes on the
    # leaf, and the guard's --intermediates complete the chain to the CA.
    bob = intermediate.issue_cert("bob@example.com")
    key, cert = write_key_and_chain(
        tmp_path, "bob", bob.private_key_pem.bytes(), *(b.bytes() for b in bob.cert_chain_pems)
    )
    assert tls.curl(path, "--cert", str(cert), "--key", str(key)) == (200, data)

    # No certificate in the handshake: whatever X-Client-Cert the client sends is dropped,
    # over TLS and over plain HTTP alike; the CA's own certificate and a real client's
    # certificate (public, without its key) get nowhere.
    for forged in (ca_pem(tls.client_ca), leaf_pem(alice)):
        header = f"X-Client-Cert: {quote(forged)}"
        status, body = tls.curl(path, "-H", header)
        assert status == 403 and body == b"a client certificate is required\n"
        plain = client.get(path, {"X-Client-Cert": quote(forged)})
        assert plain.status == 403 and plain.body == b"a client certificate is required\n"

    # Certificates nginx does not accept in the handshake never get as far as the guard.
    server_only, server_only_key = signed_by(tls.client_ca, SERVER_AUTH)
    stranger = trustme.CA().issue_cert("mallory@example.com")
    for name, key_pem, cert_pem in (
        ("server-only", _key_pem(server_only_key), pem_of(server_only)),
        ("stranger", stranger.private_key_pem.bytes(), leaf_pem(stranger)),
    ):
        key, cert = write_key_and_chain(tmp_path, name, key_pem, cert_pem)
        status, body = tls.curl(path, "--cert", str(cert), "--key", str(key))
        assert status == 400 and data not in body


def _key_pem(key: object) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(  # type: ignore[attr-defined, no-any-return]
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_a_unix_socket_service_behind_nginx(scenario, tmp_path):
    """The site's upstream on the service's unix socket, as the systemd unit runs it:
    stored files still come from nginx, lazy ones through the service."""
    nginx_binary()
    scenario.publish("eager", [STORED], "immediate")
    scenario.publish("lazy", [LAZY], "on_demand")
    with tempfile.TemporaryDirectory(prefix="pc-", dir="/tmp") as short:
        path = Path(short) / "content.sock"
        service = start_service("--bind", f"unix:{path}")
        try:
            assert eventually(lambda: path.exists() or service.poll() is not None, timeout=60)
            storage = scenario.settings.storage_root
            with running_nginx(tmp_path, path, storage) as (port, tls):
                client = Client(Port(port))  # type: ignore[arg-type]
                assert eventually(lambda: client.get("/readyz").status == 200)
                stored = client.get("/pulp/content/eager/dir/stored.bin")
                assert stored.status == 200 and stored.body == STORED.content()
                assert stored.headers["Repr-Digest"].startswith("sha-256=:")  # nginx's sendfile
                assert tls.curl("/pulp/content/lazy/lazy.bin") == (200, LAZY.content())
                assert scenario.remote.count("/lazy/lazy.bin") == 1
                assert client.get("/livez").status == 200
                assert client.get("/metrics").status == 404  # not on the public side
        finally:
            service.terminate()
            assert service.wait(timeout=30) == 0


class Echo:
    """Stands in for the service: answers what nginx sent it, as JSON, and a redirect
    with an absolute Location for /pulp/content/redirect."""

    def __init__(self) -> None:
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{path:.*}", self.echo)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = bound_port(site)

    async def stop(self) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

    async def echo(self, request: web.Request) -> web.Response:
        if request.path == "/pulp/content/redirect":
            raise web.HTTPFound("http://pulp_content/pulp/content/elsewhere/")
        return web.json_response(dict(request.headers))


def test_the_site_passes_the_host_and_the_forwarded_headers(tmp_path):
    """Host as the client sent it (with its port), X-Forwarded-For and -Proto per
    server, and the upstream's Location passed on as it is (proxy_redirect off)."""
    with (
        Background(Echo()) as echo,
        running_nginx(tmp_path, echo.server.port, tmp_path) as (
            port,
            tls,
        ),
    ):
        client = Client(Port(port))  # type: ignore[arg-type]
        plain = json.loads(client.get("/pulp/content/x", {"X-Forwarded-For": "192.0.2.7"}).body)
        assert plain["Host"] == f"127.0.0.1:{port}"
        assert plain["X-Forwarded-Proto"] == "http"
        assert plain["X-Forwarded-For"] == "192.0.2.7, 127.0.0.1"
        assert "X-Client-Cert" not in plain
        status, body = tls.curl("/pulp/content/x")
        secure = json.loads(body)
        assert status == 200 and secure["X-Forwarded-Proto"] == "https"
        assert secure["Host"] == f"127.0.0.1:{tls.port}"
        assert secure["X-Forwarded-For"] == "127.0.0.1"
        moved = client.get("/pulp/content/redirect")
        assert moved.status == 302
        assert moved.headers["Location"] == "http://pulp_content/pulp/content/elsewhere/"
        assert json.loads(client.get("/readyz").body)["Host"] == f"127.0.0.1:{port}"


def test_the_access_log_names_the_client_behind_nginx(scenario, tmp_path, monkeypatch):
    """Through the shipped site, the service logs the client nginx saw (here 127.0.0.2,
    not nginx's own 127.0.0.1), even when the client sent an X-Forwarded-For of its own:
    nginx appends the address it saw, and only the right-most untrusted one counts."""
    nginx_binary()
    scenario.publish("eager", [STORED], "immediate")
    monkeypatch.setenv("PULP_CONTENT_TRUSTED_PROXIES", "127.0.0.1")  # nginx, not 127.0.0.2
    path = "/pulp/content/eager/dir/stored.bin"
    options = ("--delegate", "nginx")
    with ServiceProcess(scenario.settings, workers=1, options=options) as service:
        storage = scenario.settings.storage_root
        with running_nginx(tmp_path, service.port, storage) as (nginx_port, _):
            for headers in ({}, {"X-Forwarded-For": "203.0.113.9"}):
                conn = http.client.HTTPConnection(
                    "127.0.0.1", nginx_port, timeout=30, source_address=("127.0.0.2", 0)
                )
                try:
                    conn.request("GET", path, headers=headers)
                    response = conn.getresponse()
                    assert response.status == 200 and response.read() == STORED.content()
                finally:
                    conn.close()

            def lines() -> list[str]:
                return [line for line in service.output().splitlines() if f"GET {path} " in line]

            assert eventually(lambda: len(lines()) == 2), service.output()
        logged, output = lines(), service.output()
    assert all(line.startswith("127.0.0.2 - - [") for line in logged), logged
    assert all(line.endswith(" delegated") for line in logged)
    assert "203.0.113.9" not in output


def test_a_metrics_location_for_prometheus_only(scenario, tmp_path):
    """README's location for scraping through nginx: Prometheus (here 127.0.0.1) gets the
    whole service's metrics, anyone else (127.0.0.2) a 403."""
    nginx_binary()
    snippet = "location = /metrics {\n    allow 127.0.0.1;\n    deny all;\n"
    snippet += "    proxy_pass http://pulp_content;\n}\n"
    with ServiceProcess(scenario.settings, workers=2) as service:
        storage = scenario.settings.storage_root
        with running_nginx(tmp_path, service.port, storage, snippet) as (nginx_port, _):

            def scrape_from(source: str) -> tuple[int, bytes]:
                conn = http.client.HTTPConnection(
                    "127.0.0.1", nginx_port, timeout=30, source_address=(source, 0)
                )
                try:
                    conn.request("GET", "/metrics")
                    response = conn.getresponse()
                    return response.status, response.read()
                finally:
                    conn.close()

            # Both workers, once the second one is up (the service answers from the first).
            assert eventually(
                lambda: b"pulp_content_worker_processes 2.0" in scrape_from("127.0.0.1")[1]
            )
            assert scrape_from("127.0.0.2")[0] == 403
