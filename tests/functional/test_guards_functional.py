"""Content guards on stored, lazy and listed content: allowed and refused, before any byte."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import threading
import time
from urllib.parse import quote

import pytest
import trustme

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service import guards, metrics
from tests.certs import SERVER_AUTH, ca_pem, leaf_pem, pem_of, signed_by
from tests.helpers import curl, curl_binary, eventually, run_command

pytestmark = pytest.mark.functional

STORED = FileSpec("stored.bin", 5000, 61)
LAZY = FileSpec("lazy.bin", 7000, 62)


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def guarded(scenario):
    """Two guarded distributions under g/: one immediate, one on_demand."""
    scenario.publish("eager", [STORED], "immediate", base_path="g/eager")
    scenario.publish("lazy", [LAZY], "on_demand", base_path="g/lazy")
    scenario.publish("open", [FileSpec("open.bin", 10, 63)], "immediate", base_path="open")

    def attach(name: str, kind: str, *options: str) -> None:
        scenario.cli("guard", "create", name, "--kind", kind, *options)
        for dist in ("eager", "lazy"):
            scenario.cli("distribution", "update", dist, "--guard", name)

    scenario.attach = attach
    return scenario


DELEGATED = b"(handed to the front web server)"
PATHS = {
    "stored": ("/pulp/content/g/eager/stored.bin", STORED.content()),
    "lazy": ("/pulp/content/g/lazy/lazy.bin", LAZY.content()),
    "listing": ("/pulp/content/g/eager/", None),
    "delegated": ("/pulp/content/g/eager/stored.bin", DELEGATED),
}


@pytest.fixture
def client(request, db):
    """The service; for the `delegated` case, one that hands stored files to nginx."""
    from dataclasses import replace

    from pulp_content.fixtures.background import Background
    from tests.functional.conftest import Client, ServiceServer

    what = request.node.callspec.params.get("what") if hasattr(request.node, "callspec") else None
    settings = replace(db, delegate="nginx") if what == "delegated" else db
    server = ServiceServer(settings)
    with Background(server):
        yield Client(server)


def assert_allowed(client, path: str, body: bytes | None, headers: dict[str, str]) -> None:
    response = client.get(path, headers)
    assert response.status == 200, response.body
    if body is DELEGATED:
        assert response.headers["X-Accel-Redirect"].startswith("/pulp/storage/artifact/")
    elif body is not None:
        assert response.body == body


def assert_refused(client, path: str, headers: dict[str, str], status: int) -> bytes:
    response = client.get(path, headers)
    assert response.status == status, response.body
    assert "X-Accel-Redirect" not in response.headers
    assert len(response.body) < 200  # a short reason, never content
    return response.body


@pytest.mark.parametrize("what", list(PATHS))
def test_header_guard(guarded, client, what):
    guarded.attach("token", "header", "--header", "X-Token", "--value", "abc", "--value", "def")
    path, body = PATHS[what]
    assert_refused(client, path, {}, 403)
    assert_refused(client, path, {"X-Token": "nope"}, 403)
    assert_allowed(client, path, body, {"X-Token": "def"})


@pytest.mark.parametrize("what", list(PATHS))
def test_basic_guard(guarded, client, what):
    guarded.attach("people", "basic", "--user", "alice:s3cret-pw", "--user", "bob:other")
    path, body = PATHS[what]
    missing = client.get(path)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"].startswith('Basic realm="pulp-content"')
    reason = assert_refused(client, path, basic("alice", "wrong"), 401)
    assert b"s3cret" not in reason
    assert_refused(client, path, {"Authorization": "Basic !!!not-base64"}, 401)
    assert_allowed(client, path, body, basic("alice", "s3cret-pw"))
    assert_allowed(client, path, body, basic("alice", "s3cret-pw"))  # cached verification


def test_basic_guard_stores_no_plaintext(guarded):
    from pulp_content.service.models import ContentGuard

    guarded.attach("people", "basic", "--user", "alice:s3cret-pw")
    stored = ContentGuard.objects.get(name="people").settings
    assert "s3cret-pw" not in str(stored)
    assert stored["users"]["alice"].startswith("pbkdf2_sha256$")
    assert "s3cret" not in guarded.cli("guard", "show", "people")


@pytest.mark.parametrize("what", list(PATHS))
def test_signed_url_guard(guarded, client, what):
    guarded.attach("links", "signed-url")
    path, body = PATHS[what]
    signed = guarded.cli("sign", f"http://localhost{path}", "--expires", "60").strip()
    signed_path = signed.removeprefix("http://localhost")
    assert "signature=" in signed_path
    assert_allowed(client, signed_path, body, {})
    assert_refused(client, path, {}, 403)  # unsigned
    tampered = signed_path.replace("signature=", "signature=0")
    assert_refused(client, tampered, {}, 403)
    other = "/pulp/content/g/eager/other.bin" + signed_path[signed_path.index("?") :]
    assert_refused(client, other, {}, 403)  # the signature binds the path


def test_signed_url_expires(guarded, client):
    from pulp_content.service.models import ContentGuard

    guarded.attach("links", "signed-url")
    key = ContentGuard.objects.get(name="links").settings["key"]
    path = PATHS["stored"][0]
    past = int(time.time()) - 1
    expired = f"{path}?expires={past}&signature={guards.signature(key, path, past)}"
    assert b"expired" in assert_refused(client, expired, {}, 403)


def test_sign_refuses_a_distribution_without_a_signed_url_guard(guarded):
    from click.testing import CliRunner

    from pulp_content.cli.main import cli as pulp_content

    result = CliRunner().invoke(pulp_content, ["sign", "http://x/pulp/content/open/open.bin"])
    assert result.exit_code == 1
    assert "has no signed-url guard" in result.stderr


@pytest.mark.parametrize("what", list(PATHS))
def test_x509_guard(guarded, client, tmp_path, what):
    ca, stranger = trustme.CA(), trustme.CA()
    (tmp_path / "ca.pem").write_bytes(ca.cert_pem.bytes())
    guarded.attach("certs", "x509", "--ca-cert", str(tmp_path / "ca.pem"))
    good = ca.issue_cert("client.example").cert_chain_pems[0].bytes().decode()
    bad = stranger.issue_cert("client.example").cert_chain_pems[0].bytes().decode()
    path, body = PATHS[what]
    assert_refused(client, path, {}, 403)
    assert_refused(client, path, {"X-Client-Cert": quote(bad)}, 403)
    assert_refused(client, path, {"X-Client-Cert": "garbage"}, 403)
    assert_allowed(client, path, body, {"X-Client-Cert": quote(good)})


def test_guarded_distributions_are_left_out_of_listings(guarded, client):
    guarded.attach("token", "header", "--header", "X-Token", "--value", "abc")
    root = client.get("/pulp/content/").body.decode()
    assert 'href="open/"' in root and 'href="g/"' not in root


def test_refused_lazy_content_never_reaches_the_upstream(guarded, client):
    guarded.attach("token", "header", "--header", "X-Token", "--value", "abc")
    client.get(PATHS["lazy"][0])
    client.head(PATHS["lazy"][0])
    assert guarded.remote.count("/lazy/lazy.bin") == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--kind", "header"], "needs --header"),
        (["--kind", "basic"], "needs at least one --user"),
        (["--kind", "basic", "--user", "nopassword"], "NAME:PASSWORD"),
        (["--kind", "x509"], "needs --ca-cert"),
    ],
)
def test_bad_guard_input(guarded, args, message):
    from click.testing import CliRunner

    from pulp_content.cli.main import cli as pulp_content

    result = CliRunner().invoke(pulp_content, ["guard", "create", "g", *args])
    assert result.exit_code == 1
    assert message in result.stderr and "Traceback" not in result.output


# -- x509: only client certificates, only from trusted proxies (issue #10, item 1) --------
@pytest.fixture
def client_ca(guarded, tmp_path):
    """A client CA with an intermediate; the guard `certs` trusts the CA."""
    ca = trustme.CA()
    (tmp_path / "ca.pem").write_text(ca_pem(ca))
    ca.intermediate = ca.create_child_ca()
    (tmp_path / "intermediates.pem").write_text(ca_pem(ca.intermediate))
    ca.files = tmp_path
    return ca


def test_x509_guard_refuses_what_is_not_a_client_certificate(guarded, client, client_ca):
    guarded.attach("certs", "x509", "--ca-cert", str(client_ca.files / "ca.pem"))
    path, body = PATHS["stored"]
    server_only, _ = signed_by(client_ca, SERVER_AUTH)
    no_usage, _ = signed_by(client_ca, None)
    for pem, reason in (
        (ca_pem(client_ca), b"a CA certificate is not a client certificate"),
        (ca_pem(client_ca.intermediate), b"a CA certificate is not a client certificate"),
        (pem_of(server_only), b"the client certificate is not for client authentication"),
        (pem_of(no_usage), b"the client certificate is not for client authentication"),
    ):
        assert assert_refused(client, path, {"X-Client-Cert": quote(pem)}, 403) == reason + b"\n"
    assert_allowed(
        client, path, body, {"X-Client-Cert": quote(leaf_pem(client_ca.issue_cert("c.example")))}
    )


def test_x509_guard_follows_chains_through_intermediates(guarded, client, client_ca):
    guarded.attach("certs", "x509", "--ca-cert", str(client_ca.files / "ca.pem"))
    path, body = PATHS["stored"]
    leaf = leaf_pem(client_ca.intermediate.issue_cert("c.example"))
    assert_refused(client, path, {"X-Client-Cert": quote(leaf)}, 403)  # no way to the CA
    chain = leaf + ca_pem(client_ca.intermediate)
    assert_allowed(client, path, body, {"X-Client-Cert": quote(chain)})
    # nginx passes the leaf only: the guard's --intermediates complete the chain.
    guarded.cli(
        "guard",
        "create",
        "chained",
        "--kind",
        "x509",
        "--ca-cert",
        str(client_ca.files / "ca.pem"),
        "--intermediates",
        str(client_ca.files / "intermediates.pem"),
    )
    guarded.cli("distribution", "update", "eager", "--guard", "chained")
    # The answer with the first guard is in the service's cache: a change reaches it
    # within a second, not at once (it failed twice in CI, on a loaded machine).
    headers = {"X-Client-Cert": quote(leaf)}
    assert eventually(lambda: client.get(path, headers).status == 200)
    assert_allowed(client, path, body, headers)


def test_x509_header_counts_only_from_a_trusted_proxy(guarded, client_ca, db, monkeypatch):
    """`serve` with PULP_CONTENT_TRUSTED_PROXIES not covering this client (127.0.0.1): a
    valid certificate in the header is ignored, in every gunicorn worker."""
    from tests.functional.conftest import Client, ServiceProcess

    guarded.attach("certs", "x509", "--ca-cert", str(client_ca.files / "ca.pem"))
    header = {"X-Client-Cert": quote(leaf_pem(client_ca.issue_cert("c.example")))}
    path, _ = PATHS["stored"]
    monkeypatch.setenv("PULP_CONTENT_TRUSTED_PROXIES", "192.0.2.0/24, ::1")
    with ServiceProcess(db, workers=2) as process:
        for _ in range(4):  # whichever worker answers
            refused = assert_refused(Client(process), path, header, 403)
            assert refused == b"a client certificate is required\n"


def test_resolve_command_takes_the_peer_into_account(guarded, client_ca, db):
    guarded.attach("certs", "x509", "--ca-cert", str(client_ca.files / "ca.pem"))
    header = "X-Client-Cert: " + quote(leaf_pem(client_ca.issue_cert("c.example")))
    env = {**os.environ}
    path = PATHS["stored"][0]
    local = run_command("resolve", path, "--header", header, "--json", env=env)
    assert local.returncode == 0, local.stderr
    assert json.loads(local.stdout)["action"] == "serve_file", local.stderr
    remote = run_command(
        "resolve", path, "--header", header, "--peer", "198.51.100.7", "--json", env=env
    )
    doc = json.loads(remote.stdout)
    assert doc["action"] == "forbidden" and doc["reason"] == "a client certificate is required"


# -- basic: equal work, a pool of its own, failures limited (issue #10, item 5) -----------
def hash_work(client) -> tuple[float, float]:
    """(passwords hashed, PBKDF2 iterations run) so far, from /metrics."""
    totals = metrics.parse(client.get("/metrics").body.decode())
    return totals["password_hashes"], totals["password_hash_iterations"]


def test_basic_guard_does_the_same_work_for_unknown_users(guarded, client):
    guarded.attach("people", "basic", "--user", "alice:s3cret-pw")
    path = PATHS["stored"][0]
    before = hash_work(client)
    wrong = assert_refused(client, path, basic("alice", "wrong"), 401)
    after_wrong = hash_work(client)
    unknown = assert_refused(client, path, basic("nobody", "wrong"), 401)
    after_unknown = hash_work(client)
    assert wrong == unknown  # the same answer...
    spent_wrong = tuple(b - a for a, b in zip(before, after_wrong, strict=True))
    spent_unknown = tuple(b - a for a, b in zip(after_wrong, after_unknown, strict=True))
    assert spent_wrong == spent_unknown == (1, guards.PBKDF2_ITERATIONS)  # ...the same work


def curl_start(url: str, *options: str) -> subprocess.Popen[str]:
    """curl in the background; its stdout is `STATUS RETRY-AFTER`."""
    return subprocess.Popen(
        [
            curl_binary(),
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %header{retry-after}",
            *options,
            url,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_password_flood_does_not_hold_up_other_requests(guarded, client):
    """Wrong passwords from many clients at once (curl, one address each behind the
    trusted proxy): while every hashing thread is busy, the pool's queue fills to its
    bound, further checks are refused with 503 at once, and an unguarded request is
    answered while the queued checks still wait."""
    from pulp_content.service.keys import PASSWORDS

    guarded.attach("people", "basic", "--user", "alice:s3cret-pw")
    passwords = client.server.app[PASSWORDS]
    base = f"http://127.0.0.1:{client.server.port}"
    release = threading.Event()
    busy = [passwords.executor.submit(release.wait, 60) for _ in range(passwords.threads)]
    flood: list[subprocess.Popen[str]] = []
    try:
        for n in range(passwords.backlog + 3):
            forwarded = f"X-Forwarded-For: 203.0.113.{n + 1}"
            flood.append(
                curl_start(base + PATHS["stored"][0], "-u", "alice:guess", "-H", forwarded)
            )
        assert eventually(lambda: sum(p.poll() is not None for p in flood) == 3)
        assert passwords.in_flight == passwords.backlog
        overflow = [p.communicate()[0] for p in flood if p.poll() is not None]
        assert overflow == ["503 1"] * 3
        open_path = "/pulp/content/open/open.bin"
        assert curl(base + open_path).status == 200
        # Answered while every queued check still waits for a hashing thread.
        assert sum(p.poll() is None for p in flood) == passwords.backlog
    finally:
        release.set()
    answers = [p.communicate(timeout=120)[0] for p in flood if p.returncode is None]
    assert answers == ["401 "] * passwords.backlog
    assert all(job.result() for job in busy)


def test_repeated_failures_from_one_address_are_slowed(guarded, db):
    """After `auth_failure_limit` wrong passwords an address gets 429 with Retry-After, even
    with the right password and without hashing it; other addresses are unaffected, and
    the address may try again once the window has passed."""
    from dataclasses import replace

    from pulp_content.fixtures.background import Background
    from tests.functional.conftest import Client, ServiceServer

    guarded.attach("people", "basic", "--user", "alice:s3cret-pw")
    server = ServiceServer(replace(db, auth_failure_limit=3, auth_failure_window=2.0))
    with Background(server):
        url = f"http://127.0.0.1:{server.port}{PATHS['stored'][0]}"
        for _ in range(3):
            assert curl(url, "-u", "alice:guess").status == 401
        hashed = hash_work(Client(server))
        limited = curl(url, "-u", "alice:guess")
        assert limited.status == 429 and 1 <= int(limited.headers["retry-after"]) <= 2
        assert curl(url, "-u", "alice:s3cret-pw").status == 429
        assert hash_work(Client(server)) == hashed  # refused without hashing
        other = curl(url, "-u", "alice:s3cret-pw", "-H", "X-Forwarded-For: 203.0.113.5")
        assert other.status == 200 and other.body == STORED.content()
        assert eventually(lambda: curl(url, "-u", "alice:s3cret-pw").status == 200)


# -- signed URLs: one canonical form (issue #10, item 6) ----------------------------------
def test_signed_urls_sign_and_check_the_path_decoded_once(scenario, client, tmp_path):
    """`pA.txt` and a file literally named `p%41.txt` (URL `p%2541.txt`): each signature
    opens its own file only. (Both hold the same bytes, so the fixture remote serves the
    second whether or not the sync encodes the `%` in its URL.)"""
    data = b"the same bytes under two names\n" * 100
    same = [FileSpec.literal("pA.txt", data), FileSpec.literal("p%41.txt", data)]
    scenario.publish("signed", same, "immediate", base_path="signed")
    scenario.cli("guard", "create", "links", "--kind", "signed-url")
    scenario.cli("distribution", "update", "signed", "--guard", "links")
    base = f"http://127.0.0.1:{client.server.port}/pulp/content/signed/"

    def sign(name: str) -> str:
        return scenario.cli("sign", base + name, "--expires", "60").strip()

    plain, percent = sign("pA.txt"), sign("p%2541.txt")
    assert curl(plain).status == 200
    assert curl(percent).status == 200  # the file named p%41.txt
    query = plain[plain.index("?") :]
    swapped = curl(base + "p%2541.txt" + query)
    assert swapped.status == 403 and swapped.body == b"the URL signature does not match\n"
    # Spelling a name differently is fine: p%41.txt and pA.txt are the same request.
    assert curl(base + "p%41.txt" + query).status == 200
