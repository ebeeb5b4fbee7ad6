"""Pull-through distributions: what a request may make the service fetch upstream, with
the remote's credentials, and keep for anonymous clients."""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import Fault, FileSpec
from tests.conftest import storage_files
from tests.functional.conftest import Client, ServiceServer
from tests.helpers import eventually

pytestmark = pytest.mark.functional

SECRET = FileSpec("secret.txt", 100, 1)  # beside the remote's URL's directory, not under it
BIG = FileSpec("sub/f.bin", 300_000, 2)
SMALL = FileSpec("sub/small.bin", 1000, 3)
ODD = FileSpec("sub/a b+c.bin", 2000, 4)
BASE = "/pulp/content/pt/"


def remote_artifacts() -> int:
    from pulp_content.service.models import RemoteArtifact

    return RemoteArtifact.objects.count()


def partials(settings) -> list:
    tmp = settings.storage_root / "tmp"
    return sorted(tmp.glob("*.partial")) if tmp.exists() else []


@pytest.fixture
def pulled(scenario):
    """Distribution `pt` pulls through from /pt/sub/ of the fixture remote."""
    scenario.remote.add_repository("pt", [SECRET, BIG, SMALL, ODD])
    url = scenario.remote.base_url + "/pt/sub/"
    scenario.cli("remote", "create", "pt", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pt")
    return scenario


ESCAPES = [
    "%252e%252e/secret.txt",
    "%252E%252E/secret.txt",
    "%2e%2e/secret.txt",
    "..%2fsecret.txt",
    "..%252fsecret.txt",
    "%252e%252e%252fsecret.txt",
    "..%5csecret.txt",
    "..%255csecret.txt",
    "..\\secret.txt",
    "../secret.txt",
    "x/../../secret.txt",
    "%25252e%25252e/secret.txt",
    "%2525%32%65%2525%32%65/secret.txt",
    "..%00/secret.txt",
]


@pytest.mark.parametrize("path", ESCAPES)
def test_a_path_leaving_the_remote_url_is_a_404_without_an_upstream_request(pulled, client, path):
    response = client.get(BASE + path)
    assert response.status == 404
    assert pulled.remote.requests == {}  # nothing at all was asked of the upstream
    assert storage_files(pulled.settings) == [] and remote_artifacts() == 0
    inside = client.get(BASE + "small.bin")
    assert inside.status == 200 and inside.body == SMALL.content()


def test_names_reach_the_upstream_encoded_once(pulled, client):
    response = client.get(BASE + "a%20b+c.bin")
    assert response.status == 200 and response.body == ODD.content()
    assert pulled.remote.raw_requests == {("GET", "/pt/sub/a%20b+c.bin"): 1}


def test_resolve_shows_what_a_pull_through_fetch_kept(pulled, client):
    """First a stream from beside the remote's URL, then the stored file: both in three
    statements (the distribution, its remote, the remote artifact met at that URL)."""

    def resolved() -> dict:
        return json.loads(pulled.cli("resolve", BASE + "small.bin", "--json"))

    before = resolved()
    assert (before["action"], before["queries"]) == ("stream", 3)
    assert before["remote_artifacts"][0]["url"] == pulled.remote.base_url + "/pt/sub/small.bin"
    assert client.get(BASE + "small.bin").status == 200
    assert eventually(lambda: resolved()["action"] == "serve_file")
    after = resolved()
    assert after["artifact"]["sha256"] == hashlib.sha256(SMALL.content()).hexdigest()
    assert after["queries"] == 3


def test_a_query_string_is_not_forwarded_and_does_not_start_new_downloads(pulled, client):
    for query in ("?x=1", "?x=2", "?x=3"):
        response = client.get(BASE + "f.bin" + query)
        assert response.status == 200 and response.body == BIG.content()
    assert pulled.remote.raw_requests == {("GET", "/pt/sub/f.bin"): 1}


def test_an_encoded_question_mark_is_part_of_the_name(pulled, client):
    for query in ("%3Fx=1", "%3Fx=2"):
        assert client.get(BASE + "f.bin" + query).status == 404  # no file of that name
    assert pulled.remote.raw_requests == {
        ("GET", "/pt/sub/f.bin%3Fx=1"): 1,
        ("GET", "/pt/sub/f.bin%3Fx=2"): 1,
    }
    assert storage_files(pulled.settings) == []


def test_a_remote_may_forward_the_query(pulled, client):
    pulled.cli("remote", "update", "pt", "--forward-query")
    response = client.get(BASE + "f.bin?token=abc")
    assert response.status == 200 and response.body == BIG.content()
    assert pulled.remote.raw_requests == {("GET", "/pt/sub/f.bin?token=abc"): 1}


def test_head_is_a_head_upstream_and_keeps_nothing(pulled, client):
    response = client.head(BASE + "f.bin")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(BIG.size)
    assert pulled.remote.requests == {("HEAD", "/pt/sub/f.bin"): 1}
    assert storage_files(pulled.settings) == [] and remote_artifacts() == 0
    missing = client.head(BASE + "nothing.bin")
    assert missing.status == 404
    assert pulled.remote.count("/pt/sub/nothing.bin") == 0  # no GET either


def test_back_to_back_gets_each_answer_and_download_once(pulled, client):
    """A GET that arrives while the previous one's fetch is being saved follows it (or
    reads the saved file), in this worker or another: never a 500, never a second
    download."""
    files = [FileSpec(f"sub/race-{i}.bin", 200_000 + i, 10 + i) for i in range(8)]
    pulled.remote.add_repository("pt", [SECRET, BIG, SMALL, ODD, *files])
    for spec in files:
        name = spec.relative_path.removeprefix("sub/")
        statuses = []
        for _ in range(4):
            response = client.get(BASE + name)
            statuses.append(response.status)
            assert response.body == spec.content() or response.status != 200
        assert statuses == [200] * 4, (name, statuses)
        assert pulled.remote.count(f"/pt/{spec.relative_path}") == 1, name
    # A client has every byte before the save (fsyncs) is over: its partial goes then.
    assert eventually(lambda: partials(pulled.settings) == [])


def test_remotes_with_other_credentials_never_share_a_download(scenario, client):
    scenario.remote.add_repository("private", [BIG])
    scenario.remote.set_fault("private", Fault("basic_auth", username="u", password="p"))
    url = scenario.remote.base_url + "/private/"
    for name, password in (("good", "p"), ("bad", "wrong")):
        scenario.cli(
            "remote", "create", name, "--url", url, "--policy", "on_demand",
            "--username", "u", "--password", password,
        )  # fmt: skip
        scenario.cli("distribution", "create", name, "--base-path", name, "--remote", name)
    good = client.get("/pulp/content/good/sub/f.bin")
    assert good.status == 200 and good.body == BIG.content()
    refused = client.get("/pulp/content/bad/sub/f.bin")
    assert refused.status == 502 and b"401" in refused.body
    assert scenario.remote.count("/private/sub/f.bin") == 2
    from pulp_content.service.models import RemoteArtifact

    recorded = RemoteArtifact.objects.values_list("remote__name", flat=True)
    assert eventually(lambda: list(recorded.all()) == ["good"])  # saved after the answer


@pytest.fixture
def bounded(pulled):
    pulled.cli("remote", "update", "pt", "--max-size", "100K")
    return pulled


def test_a_file_over_the_remote_max_size_is_refused_and_nothing_is_kept(bounded, client):
    for method in ("GET", "HEAD", "GET"):
        response = client.request(method, BASE + "f.bin")
        assert response.status == 502
        if method == "GET":
            assert b"larger than the remote's max size (102400 bytes)" in response.body
            assert b"127.0.0.1" not in response.body
    assert storage_files(bounded.settings) == [] and remote_artifacts() == 0
    assert partials(bounded.settings) == []
    fits = client.get(BASE + "small.bin")
    assert fits.status == 200 and fits.body == SMALL.content()


def test_max_size_is_shown_and_can_be_lifted(bounded, client):
    assert "max_size: 102400" in bounded.cli("remote", "show", "pt")
    bounded.cli("remote", "update", "pt", "--max-size", "0")
    assert "max_size: -" in bounded.cli("remote", "show", "pt")
    assert client.get(BASE + "f.bin").body == BIG.content()


def test_concurrent_gets_share_one_download_across_workers(pulled, client):
    """Clients asking while the file is on its way follow the one download, in this
    worker or through its partial file in another."""
    pulled.remote.set_fault("pt", Fault("bandwidth", bytes_per_second=600_000))
    with ThreadPoolExecutor(12) as pool:
        replies = list(pool.map(lambda _: client.get(BASE + "f.bin"), range(12)))
    assert [r.status for r in replies] == [200] * 12
    assert all(r.complete and r.body == BIG.content() for r in replies)
    assert pulled.remote.count("/pt/sub/f.bin") == 1
    assert eventually(lambda: remote_artifacts() == 1)
    assert eventually(lambda: partials(pulled.settings) == [])


def begin(client, path: str) -> tuple[threading.Thread, list]:
    """GET `path` on a thread of its own; join the thread, then the list holds the reply."""
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(client.get(path)))
    thread.start()
    return thread, replies


def test_another_worker_follows_the_download_in_flight(pulled, client, second_worker):
    """Its sha256 unknown until the end, a pull-through file is followed through the
    partial file the downloading worker writes, and found in storage once it is saved."""
    pulled.remote.set_fault("pt", Fault("bandwidth", bytes_per_second=600_000))
    starter, first = begin(client, BASE + "f.bin")
    assert eventually(lambda: any(p.stat().st_size > 1000 for p in partials(pulled.settings)))
    other = second_worker.get(BASE + "f.bin")
    starter.join()
    assert other.status == 200 and other.complete and other.body == BIG.content()
    assert first[0].complete and first[0].body == BIG.content()
    assert pulled.remote.count("/pt/sub/f.bin") == 1
    assert eventually(lambda: remote_artifacts() == 1)
    assert partials(pulled.settings) == []


def test_a_failed_download_in_another_worker_aborts_its_followers(pulled, client, second_worker):
    pulled.cli("remote", "update", "pt", "--sock-read-timeout", "1")
    pulled.remote.set_fault("pt", Fault("stall", at=100_000, delay=3.0))
    starter, first = begin(client, BASE + "f.bin")
    assert eventually(lambda: any(p.stat().st_size > 1000 for p in partials(pulled.settings)))
    other = second_worker.get(BASE + "f.bin")
    starter.join()
    assert not first[0].complete and not other.complete
    assert len(other.body) < BIG.size
    assert pulled.remote.count("/pt/sub/f.bin") == 1
    assert storage_files(pulled.settings) == [] and remote_artifacts() == 0


def test_a_file_the_upstream_lacks_is_asked_for_once_per_max_age(pulled, client):
    """Found with 100 `apt-get update` at once (tests/perf/apt_herd.py): the `InRelease`
    an unsigned repository lacks went upstream once per group of clients arriving
    together (26 times). A worker now keeps the upstream's 404 for the remote's metadata
    max age; after it, the upstream is asked again."""
    pulled.cli("remote", "update", "pt", "--metadata-max-age", "2")
    path, upstream_path = BASE + "dists/InRelease", "/pt/sub/dists/InRelease"
    for _ in range(10):
        reply = client.get(path)
        assert reply.status == 404 and reply.body == b"not found upstream\n"
    asked = pulled.remote.count(upstream_path)
    assert asked == 1  # whichever worker answered (serve --workers 2 on PostgreSQL)

    def asked_again() -> bool:
        assert client.get(path).status == 404
        return pulled.remote.count(upstream_path) > asked

    assert eventually(asked_again, timeout=10)


def test_a_file_the_upstream_lacks_is_asked_for_once_by_all_workers_and_hosts(
    pulled, client, second_worker
):
    """Found with 100 `apt-get update` at once against `serve --workers 2`: the upstream's
    404 for `InRelease` was kept by each worker apart, so it went upstream once per worker;
    and a worker following another's download of it saw the file made, then gone, and cut
    its clients off. The downloading worker now records the 404 before it lets go of the
    claim: its followers answer 404, and every worker and host takes it, without asking
    again, for the remote's metadata max age, unless the remote changes."""
    path = BASE + "dists/InRelease"

    def asked() -> int:
        return pulled.remote.count("/pt/sub/dists/InRelease")

    pulled.remote.set_fault("pt", Fault("latency", delay=1.5))  # the 404 comes late
    starter, first = begin(client, path)
    assert eventually(lambda: partials(pulled.settings) != [])  # its download holds the claim
    other = second_worker.get(path)  # another worker: follows that download
    starter.join()
    for reply in (first[0], other):
        assert reply.status == 404 and reply.body == b"not found upstream\n"
    assert asked() == 1
    server = ServiceServer(pulled.settings)  # another host, started now
    with Background(server):
        third = Client(server)
        assert [third.get(path).status for _ in range(3)] == [404] * 3
        assert second_worker.get(path).status == 404
        assert asked() == 1
        pulled.cli("remote", "update", "pt", "--metadata-max-age", "600")
        # A change of the remote voids what its upstream said before.
        assert eventually(lambda: third.get(path).status == 404 and asked() == 2)
    assert partials(pulled.settings) == [] and remote_artifacts() == 0
