"""`pulp-content reclaim` in a fresh process, beside a running service: what it removes,
what it leaves, and that reclaimed content is fetched again, once."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os

import pytest

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.functional.conftest import Client, ServiceProcess
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

LAZY = [FileSpec(f"lazy{i}.bin", 70_000 + i, 40 + i) for i in range(2)]
KEPT = [FileSpec("kept.bin", 50_000, 50)]


def reclaim(*options: str):
    return run_command("reclaim", *options, env=dict(os.environ))


def name_of(spec: FileSpec) -> str:
    return artifact_name(hashlib.sha256(spec.content()).hexdigest())


def stored(settings, spec: FileSpec) -> bool:
    return open_storage(settings).path_of(name_of(spec)).exists()


def artifact_row(spec: FileSpec):
    from pulp_content.service.models import Artifact

    return Artifact.objects.filter(sha256=hashlib.sha256(spec.content()).hexdigest()).first()


def fetch_all(client, base: str, specs: list[FileSpec]) -> None:
    """GET each file (fetched upstream and saved on the first request)."""
    for spec in specs:
        reply = client.get(base + spec.relative_path)
        assert reply.status == 200 and reply.body == spec.content()
    assert eventually(lambda: all(artifact_row(s) is not None for s in specs))


@pytest.fixture
def lazy_and_kept(scenario):
    """`lazy` (on_demand) and `kept` (immediate), both published and distributed."""
    lazy = scenario.publish("lazy", LAZY, "on_demand")
    kept = scenario.publish("kept", KEPT, "immediate")
    return scenario, lazy, kept


def test_reclaim_removes_files_and_rows_and_a_request_fetches_again_once(lazy_and_kept, client):
    scenario, lazy, kept = lazy_and_kept
    fetch_all(client, lazy, LAZY)
    assert client.get(kept + KEPT[0].relative_path).status == 200
    from pulp_content.service.models import ContentArtifact, PublishedMetadata, RemoteArtifact

    remote_artifacts = RemoteArtifact.objects.count()

    done = reclaim("--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["count"] == 2 and report["busy"] == 0 and not report["dry_run"]
    assert report["bytes"] == sum(spec.size for spec in LAZY)
    assert sorted(a["file"] for a in report["artifacts"]) == sorted(map(name_of, LAZY))
    for spec in LAZY:
        assert not stored(scenario.settings, spec) and artifact_row(spec) is None
    lazy_links = ContentArtifact.objects.filter(content__relative_path__startswith="lazy")
    assert [ca.artifact_id for ca in lazy_links] == [None, None]
    assert RemoteArtifact.objects.count() == remote_artifacts  # lazy again, refetchable
    # Immediate content and the publications' generated metadata stay.
    assert stored(scenario.settings, KEPT[0]) and artifact_row(KEPT[0]) is not None
    for meta in PublishedMetadata.objects.all():
        assert open_storage(scenario.settings).path_of(meta.artifact.file).exists()

    # Every worker answers from the database again: fetched anew, once, whatever the
    # cache held (a cached answer naming the file that went is asked again).
    for _ in range(3):
        for spec in LAZY:
            reply = client.get(lazy + spec.relative_path)
            assert reply.status == 200 and reply.body == spec.content()
    assert eventually(lambda: all(artifact_row(s) is not None for s in LAZY))
    for spec in LAZY:
        assert scenario.remote.count(f"/lazy/{spec.relative_path}") == 2
        assert stored(scenario.settings, spec)
    assert scenario.remote.count(f"/kept/{KEPT[0].relative_path}") == 1

    again = reclaim()
    assert again.returncode == 0, again.stderr
    assert sorted(again.stdout.split()[::2]) == sorted(map(name_of, LAZY))
    assert again.stderr == f"reclaimed 2 artifacts, {sum(s.size for s in LAZY)} bytes\n"


def test_dry_run_changes_nothing(lazy_and_kept, client):
    scenario, lazy, _ = lazy_and_kept
    fetch_all(client, lazy, LAZY)
    done = reclaim("--dry-run")
    assert done.returncode == 0, done.stderr
    assert sorted(done.stdout.splitlines()) == sorted(
        f"{name_of(spec)} {spec.size}" for spec in LAZY
    )
    assert done.stderr == f"would reclaim 2 artifacts, {sum(s.size for s in LAZY)} bytes\n"
    for spec in LAZY:
        assert stored(scenario.settings, spec) and artifact_row(spec) is not None


def test_older_than_goes_by_last_use(lazy_and_kept, client):
    """An artifact served long ago goes; one fetched or served lately stays."""
    scenario, lazy, _ = lazy_and_kept
    fetch_all(client, lazy, LAZY)
    from pulp_content.service.models import Artifact

    old, recent = LAZY
    long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    Artifact.objects.filter(pk=artifact_row(old).pk).update(last_used=long_ago, created=long_ago)
    Artifact.objects.filter(pk=artifact_row(recent).pk).update(created=long_ago)
    recent_use = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    Artifact.objects.filter(pk=artifact_row(recent).pk).update(last_used=recent_use)

    done = reclaim("--older-than", "2", "--json")
    assert done.returncode == 0, done.stderr
    assert [a["file"] for a in json.loads(done.stdout)["artifacts"]] == [name_of(old)]
    assert not stored(scenario.settings, old) and stored(scenario.settings, recent)


def test_an_artifact_being_downloaded_is_left_alone(lazy_and_kept, client):
    """A download of the same bytes holds the claim on its partial file (as a worker
    does while it downloads): reclaim skips that artifact and says so."""
    scenario, lazy, _ = lazy_and_kept
    fetch_all(client, lazy, LAZY)
    storage = open_storage(scenario.settings)
    busy = hashlib.sha256(LAZY[0].content()).hexdigest()
    claim = storage.locks.claim(storage.partial_of(busy))
    assert claim is not None
    try:
        done = reclaim("--json")
    finally:
        claim.release()
        storage.locks.close()
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["busy"] == 1 and [a["file"] for a in report["artifacts"]] == [name_of(LAZY[1])]
    assert stored(scenario.settings, LAZY[0]) and artifact_row(LAZY[0]) is not None


def test_remote_picks_the_content_of_one_remote(scenario, client):
    one = scenario.publish("one", LAZY[:1], "on_demand")
    two = scenario.publish("two", LAZY[1:], "on_demand")
    fetch_all(client, one, LAZY[:1])
    fetch_all(client, two, LAZY[1:])
    done = reclaim("--remote", "two", "--json")
    assert done.returncode == 0, done.stderr
    assert [a["file"] for a in json.loads(done.stdout)["artifacts"]] == [name_of(LAZY[1])]
    assert stored(scenario.settings, LAZY[0])


MUTABLE = FileSpec("dists/stable/InRelease", 3000, 60)
IMMUTABLE = FileSpec("pool/main/p.deb", 40_000, 61)


def test_pull_through_copies_go_but_mutable_ones(scenario, client):
    """An immutable pull-through copy is reclaimed and fetched again (verified against
    the digests kept); a mutable one (revalidated in place) stays."""
    scenario.remote.add_repository("pt", [MUTABLE, IMMUTABLE])
    url = scenario.remote.base_url + "/pt/"
    scenario.cli("remote", "create", "pt", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pt")
    base = f"{scenario.settings.content_prefix}pt/"
    fetch_all(client, base, [MUTABLE, IMMUTABLE])

    done = reclaim("--json")
    assert done.returncode == 0, done.stderr
    assert [a["file"] for a in json.loads(done.stdout)["artifacts"]] == [name_of(IMMUTABLE)]
    assert stored(scenario.settings, MUTABLE) and not stored(scenario.settings, IMMUTABLE)
    for _ in range(2):
        reply = client.get(base + IMMUTABLE.relative_path)
        assert reply.status == 200 and reply.body == IMMUTABLE.content()
    assert scenario.remote.count(f"/pt/{IMMUTABLE.relative_path}") == 2
    assert eventually(lambda: stored(scenario.settings, IMMUTABLE))


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--remote", "nope"), "Error: no remote named 'nope'"),
        (("--older-than", "-1"), "Error: Invalid value for '--older-than'"),
        (("--older-than", "soon"), "Error: Invalid value for '--older-than'"),
    ],
)
def test_bad_input_is_one_error_line(db, options, message):
    done = reclaim(*options)
    assert done.returncode != 0 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and errors[0].startswith(message), done.stderr


SMALL = FileSpec("small.txt", 2000, 80)  # kept in each worker's memory once served


def test_every_serve_worker_hears_of_a_reclaim_within_a_second(scenario):
    """A small file is answered from each worker's memory (resolution and file caches)
    until the reclaim's change reaches it: within a second it is fetched again."""
    base = scenario.publish("warm", [SMALL], "on_demand")
    workers = 1 if scenario.settings.is_sqlite else 2
    with ServiceProcess(scenario.settings, workers) as process:
        client = Client(process)
        for _ in range(8):  # warm every worker
            reply = client.get(base + SMALL.relative_path)
            assert reply.status == 200 and reply.body == SMALL.content()
        assert eventually(lambda: artifact_row(SMALL) is not None)
        assert scenario.remote.count(f"/warm/{SMALL.relative_path}") == 1
        assert reclaim().returncode == 0
        assert not stored(scenario.settings, SMALL)

        def fetched_again() -> bool:
            reply = client.get(base + SMALL.relative_path)
            assert reply.status == 200 and reply.body == SMALL.content()
            return scenario.remote.count(f"/warm/{SMALL.relative_path}") == 2

        assert eventually(fetched_again, timeout=1.0)
        for _ in range(8):
            assert client.get(base + SMALL.relative_path).status == 200
        assert scenario.remote.count(f"/warm/{SMALL.relative_path}") == 2


LARGE = FileSpec("large.bin", 24 * 1024 * 1024, 81)


def test_a_client_reading_a_file_that_is_reclaimed_gets_it_whole(scenario, client):
    """The reclaim removes the file while the service is still sending it (more than the
    socket buffers hold is left): the open file outlives its name."""
    import http.client

    base = scenario.publish("large", [LARGE], "on_demand")
    fetch_all(client, base, [LARGE])
    conn = http.client.HTTPConnection("127.0.0.1", client.server.port, timeout=30)
    try:
        conn.request("GET", base + LARGE.relative_path)
        response = conn.getresponse()
        assert response.status == 200
        digest = hashlib.sha256(response.read(64 * 1024))
        assert reclaim().returncode == 0
        assert not stored(scenario.settings, LARGE) and artifact_row(LARGE) is None
        while chunk := response.read(1024 * 1024):
            digest.update(chunk)
    finally:
        conn.close()
    assert digest.hexdigest() == hashlib.sha256(LARGE.content()).hexdigest()


def test_bytes_an_immediate_repository_also_holds_stay(scenario, client):
    """One artifact for the same bytes in an on_demand and an immediate repository: the
    immediate one needs it, so it stays (and the on_demand content stays served)."""
    both = FileSpec("both.bin", 30_000, 82)
    lazy = scenario.publish("lazy-both", [both], "on_demand")
    scenario.publish("kept-both", [both], "immediate")
    done = reclaim("--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["count"] == 0
    assert stored(scenario.settings, both)
    assert client.get(lazy + both.relative_path).status == 200
    assert scenario.remote.count(f"/lazy-both/{both.relative_path}") == 0
