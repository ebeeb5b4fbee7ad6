"""Lazy downloads against a misbehaving live upstream: what the client sees, what is left."""

from __future__ import annotations

import hashlib

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.helpers import eventually

pytestmark = pytest.mark.functional

FILE = FileSpec("big.bin", 600 * 1024, 7)
PATH = "/pulp/content/faulty/big.bin"


def remote_artifact_failed() -> bool:
    from pulp_content.service.models import RemoteArtifact

    return RemoteArtifact.objects.filter(
        url__endswith="/faulty/big.bin", failed_at__isnull=False
    ).exists()


def assert_nothing_saved(settings) -> None:
    """No Artifact row and no file at the exact storage path, no partial file."""
    from pulp_content.service.models import Artifact

    sha256 = hashlib.sha256(FILE.content()).hexdigest()
    assert not Artifact.objects.filter(sha256=sha256).exists()
    assert not open_storage(settings).path_of(artifact_name(sha256)).exists()
    assert open_storage(settings).partials() == []


def add_mirror(faulty) -> None:
    """A second remote (the fixture's "mirror" repository) holding the same file."""
    from pulp_content.service.models import ContentArtifact, Remote, RemoteArtifact

    mirror_url = faulty.remote.add_repository("mirror", [FILE])
    mirror = Remote.objects.create(name="mirror", url=mirror_url, policy="on_demand", retries=0)
    RemoteArtifact.objects.create(
        content_artifact=ContentArtifact.objects.get(relative_path="big.bin"),
        remote=mirror,
        url=mirror_url.replace("PULP_MANIFEST", "big.bin"),
        size=FILE.size,
    )


@pytest.fixture
def faulty(scenario):
    """Remote `faulty`, without retries: here each failure is final at its first answer
    (test_retries_functional.py is about the retries)."""
    scenario.publish("faulty", [FILE], "on_demand")
    scenario.cli("remote", "update", "faulty", "--retries", "0")
    return scenario


@pytest.mark.parametrize(
    ("fault", "status"),
    [
        (Fault("status", status=500), 502),
        (Fault("status", status=503), 502),
        (Fault("status", status=404), 502),
        (Fault("reset"), 502),
        (Fault("latency", delay=4.0), 504),
    ],
)
def test_failure_before_the_first_byte(faulty, client, fault, status):
    faulty.remote.set_fault("faulty", fault)
    response = client.get(PATH)
    assert response.status == status
    assert response.headers["Content-Type"].startswith("text/plain")
    assert "upstream" in response.body.decode()
    assert_nothing_saved(faulty.settings)
    # The upstream recovers: the next request is served in full.
    faulty.remote.set_fault("faulty", None)
    again = client.get(PATH)
    assert again.status == 200 and again.body == FILE.content()


@pytest.mark.parametrize(
    "fault",
    [
        Fault("truncate", at=300 * 1024),
        Fault("wrong_bytes"),
        Fault("wrong_length"),
        Fault("stall", at=300 * 1024, delay=5.0),
    ],
)
def test_failure_after_the_first_byte_aborts_the_client(faulty, client, fault):
    faulty.remote.set_fault("faulty", fault)
    response = client.get(PATH)
    assert response.status == 200
    assert not response.complete
    # Held back: the client never holds every byte of a corrupt file.
    assert len(response.body) < FILE.size
    assert eventually(remote_artifact_failed)
    assert_nothing_saved(faulty.settings)
    faulty.remote.set_fault("faulty", None)
    again = client.get(PATH)
    assert again.complete and again.body == FILE.content()


def test_next_remote_artifact_is_tried_before_the_first_byte(faulty, client):
    """Two remotes hold the same content; the first one fails, the second serves."""
    add_mirror(faulty)
    faulty.remote.set_fault("faulty", Fault("status", status=500))
    response = client.get(PATH)
    assert response.status == 200 and response.body == FILE.content()
    assert faulty.remote.count("/faulty/big.bin") == 1
    assert faulty.remote.count("/mirror/big.bin") == 1
    assert eventually(remote_artifact_failed)


def test_remote_basic_auth(scenario, client):
    other = FileSpec("other.bin", 1000, 8)
    scenario.remote.add_repository("private", [FILE, other])
    scenario.remote.set_fault("private", Fault("basic_auth", username="u", password="p"))
    url = scenario.remote.manifest_url("private")
    auth = ("--username", "u", "--password", "p", "--header", "X-Mirror: test")
    scenario.sync_from("private", url, "--policy", "on_demand", *auth)
    scenario.cli(
        "distribution", "create", "private", "--base-path", "private", "--repository", "private"
    )
    assert client.get("/pulp/content/private/big.bin").body == FILE.content()
    scenario.cli("remote", "update", "private", "--password", "wrong")
    refused = client.get("/pulp/content/private/other.bin")
    assert refused.status == 502
    assert "401" in refused.body.decode()


def test_service_keeps_serving_and_leaks_no_descriptors(faulty, client):
    """200 faulty requests: every one fails cleanly, other requests are still answered,
    and the service's descriptors do not grow with the number of failures."""

    def faulty_round(count: int) -> None:
        faulty.remote.set_fault("faulty", Fault("truncate", at=1000))
        for _ in range(count):
            assert not client.get(PATH).complete
        faulty.remote.set_fault("faulty", Fault("status", status=500))
        for _ in range(count):
            assert client.get(PATH).status == 502
        assert client.get("/pulp/content/").status == 200

    faulty_round(10)  # warm up: pooled upstream connections, executor threads
    before = client.server.descriptors()
    faulty_round(90)
    after = client.server.descriptors()
    # A leak of one descriptor per failure would add 180; pooled keep-alive sockets and
    # the database connections of new executor threads may come and go by a few.
    new = sorted(set(after) - set(before))
    assert len(after) - len(before) < 10, new
    assert open_storage(faulty.settings).partials() == []


def test_tls_remote_with_its_ca(scenario, client, tmp_path):
    """The fixture remote serves HTTPS with a CA it made at start; --ca-cert trusts it."""
    from pulp_content.fixtures.background import Background
    from pulp_content.fixtures.remote import FixtureRemote

    secure = FixtureRemote(tls=True)
    with Background(secure):
        url = secure.add_repository("tls", [FILE])
        ca = tmp_path / "ca.pem"
        assert secure.ca_pem is not None
        ca.write_bytes(secure.ca_pem)
        scenario.sync_from("tls", url, "--policy", "on_demand", "--ca-cert", str(ca))
        scenario.cli("distribution", "create", "tls", "--base-path", "tls", "--repository", "tls")
        response = client.get("/pulp/content/tls/big.bin")
        assert response.status == 200 and response.body == FILE.content()
        assert secure.count("/tls/big.bin") == 1

        # Without the CA the same remote is refused, with a reason naming TLS.
        scenario.cli("remote", "create", "untrusted", "--url", url, "--policy", "on_demand")
        from click.testing import CliRunner

        from pulp_content.cli.main import cli as pulp_content

        result = CliRunner().invoke(
            pulp_content, ["repository", "sync", "tls", "--remote", "untrusted"]
        )
        assert result.exit_code == 1
        assert "TLS failed" in result.stderr or "certificate" in result.stderr


def test_extra_headers_reach_the_upstream(scenario, client):
    url = scenario.remote.add_repository("headers", [FILE])
    headers = ("--header", "X-Mirror-Token: abc123", "--header", "Accept-Language: en")
    scenario.sync_from("headers", url, "--policy", "on_demand", *headers)
    scenario.cli(
        "distribution", "create", "headers", "--base-path", "headers", "--repository", "headers"
    )
    assert client.get("/pulp/content/headers/big.bin").body == FILE.content()
    seen = scenario.remote.last_headers["/headers/big.bin"]
    assert seen["X-Mirror-Token"] == "abc123"
    assert seen["Accept-Language"] == "en"
    assert seen["User-Agent"].startswith("pulp-content/")


def test_bandwidth_capped_upstream_still_delivers(faulty, client):
    faulty.remote.set_fault("faulty", Fault("bandwidth", bytes_per_second=2 * 1024 * 1024))
    response = client.get(PATH)
    assert response.complete and response.body == FILE.content()


def test_range_from_an_upstream_that_ignores_range(faulty, client):
    faulty.remote.set_fault("faulty", Fault("ignore_range"))
    response = client.get(PATH, headers={"Range": "bytes=1000-1999"})
    assert response.status == 206
    assert response.body == FILE.content()[1000:2000]


def test_a_dropped_upstream_connection_is_resumed_where_it_broke(faulty, client):
    """The upstream closes the connection half-way once; the service asks for the rest
    with Range + If-Range, and the client sees one uninterrupted, correct body."""
    faulty.remote.set_fault("faulty", Fault("truncate", at=300 * 1024, times=1))
    response = client.get(PATH)
    assert response.status == 200 and response.complete
    assert response.body == FILE.content()
    assert faulty.remote.count("/faulty/big.bin") == 2
    assert faulty.remote.ranged["/faulty/big.bin"] == 1
    resumed = faulty.remote.last_headers["/faulty/big.bin"]
    # From what it holds: what the upstream sent and it had not read yet (at most the
    # chunks in flight) is lost with the connection and asked for again.
    start = int(resumed["Range"].removeprefix("bytes=").removesuffix("-"))
    assert 0 < start <= 300 * 1024
    assert resumed["If-Range"] == f'"{hashlib.sha256(FILE.content()).hexdigest()}"'
    assert eventually(lambda: not remote_artifact_failed() and saved())


def saved() -> bool:
    from pulp_content.service.models import Artifact

    return Artifact.objects.filter(sha256=hashlib.sha256(FILE.content()).hexdigest()).exists()


def test_a_failed_remote_artifact_is_passed_over_during_its_cooldown(faulty, client):
    add_mirror(faulty)
    faulty.remote.set_fault("faulty", Fault("wrong_bytes"))
    assert not client.get(PATH).complete  # the first remote artifact, corrupt
    assert eventually(remote_artifact_failed)
    # The first one has recovered, the mirror breaks. Within the cooldown the failed one
    # is not asked again while the mirror is there: the mirror's 500 is the answer.
    faulty.remote.set_fault("faulty", None)
    faulty.remote.set_fault("mirror", Fault("status", status=500))
    assert client.get(PATH).status == 502
    assert faulty.remote.count("/faulty/big.bin") == 1
    assert faulty.remote.count("/mirror/big.bin") == 1


def test_with_no_alternative_a_failed_remote_artifact_is_tried_again(faulty, client):
    faulty.remote.set_fault("faulty", Fault("status", status=500))
    assert client.get(PATH).status == 502
    assert eventually(remote_artifact_failed)
    faulty.remote.set_fault("faulty", None)
    assert client.get(PATH).body == FILE.content()
