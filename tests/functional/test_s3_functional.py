"""Artifacts in an S3 bucket (SeaweedFS on loopback, `tests/s3server.py`): lazy saves
upload before their rows commit, stored artifacts are streamed from the bucket (Range
forwarded) or redirected to a presigned URL, sync uploads, `storage check` and the
start-up sweep see the bucket, and nothing is kept on the local disk but downloads in
progress."""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import os
import signal
import subprocess
import urllib.error
import urllib.parse
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import CLI, free_port
from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.config import Settings
from pulp_content.service.keys import DOWNLOADS
from pulp_content.service.storage import artifact_name, open_storage
from tests.conftest import Scenario
from tests.functional.conftest import Client, ServiceProcess, ServiceServer, running_service
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

BIG = FileSpec("big.bin", 300_000, 91)  # streamed from the bucket (over SMALL_FILE)
SMALL = FileSpec("notes.txt", 5_000, 92)  # read whole once, then kept in memory
ISO = FileSpec("dir/disk.iso", 200_000, 93)
LARGE = FileSpec("large.img", 20 * 1024 * 1024 + 5, 94)  # over the multipart threshold


@pytest.fixture
def s3_scenario(cli, upstream, s3_db) -> Scenario:
    return Scenario(cli, upstream, s3_db)


def sha256(spec: FileSpec) -> str:
    return hashlib.sha256(spec.content()).hexdigest()


def key_of(scenario: Scenario, spec: FileSpec) -> str:
    prefix = scenario.settings.s3_location[1]  # type: ignore[index]
    return prefix + artifact_name(sha256(spec))


def linked(relative_path: str) -> bool:
    from pulp_content.service.models import ContentArtifact

    query = ContentArtifact.objects.filter(relative_path=relative_path, artifact__isnull=False)
    return query.exists()


def no_local_artifacts(scenario: Scenario) -> bool:
    return not (scenario.settings.storage_root / "artifact").exists()


def test_a_lazy_fetch_is_uploaded_then_served_from_the_bucket(s3_scenario, s3_server):
    base = s3_scenario.publish("lazy", [BIG, SMALL])
    with running_service(s3_scenario.settings) as client:
        for spec in (BIG, SMALL):
            first = client.get(base + spec.relative_path)
            assert first.status == 200 and first.body == spec.content()
            assert eventually(lambda spec=spec: linked(spec.relative_path))
            assert key_of(s3_scenario, spec) in s3_server.object_keys()
        for spec in (BIG, SMALL, SMALL):  # the small one from memory the second time
            again = client.get(base + spec.relative_path)
            assert again.status == 200 and again.body == spec.content()
            assert again.headers["ETag"] == f'"{sha256(spec)}"'
            assert s3_scenario.remote.count(f"/lazy/{spec.relative_path}") == 1
    assert no_local_artifacts(s3_scenario)
    assert open_storage(s3_scenario.settings).partials() == []


def test_ranges_and_conditional_requests_on_a_stored_object(s3_scenario):
    base = s3_scenario.publish("ranged", [BIG], "immediate")
    data, path = BIG.content(), base + BIG.relative_path
    with running_service(s3_scenario.settings) as client:
        part = client.get(path, {"Range": "bytes=1000-70999"})
        assert part.status == 206 and part.body == data[1000:71000]
        assert part.headers["Content-Range"] == f"bytes 1000-70999/{len(data)}"
        tail = client.get(path, {"Range": "bytes=-10"})
        assert tail.status == 206 and tail.body == data[-10:]
        beyond = client.get(path, {"Range": f"bytes={len(data)}-"})
        assert beyond.status == 416
        assert beyond.headers["Content-Range"] == f"bytes */{len(data)}"
        head = client.head(path)
        assert head.status == 200 and head.headers["Content-Length"] == str(len(data))
        assert head.headers["Repr-Digest"].startswith("sha-256=:")
        etag = head.headers["ETag"]
        assert client.get(path, {"If-None-Match": etag}).status == 304
        since = client.get(path, {"If-Modified-Since": head.headers["Last-Modified"]})
        assert since.status == 304
    assert s3_scenario.remote.count(f"/ranged/{BIG.relative_path}") == 1  # the sync's


def test_presigned_mode_redirects_to_the_bucket_with_type_and_name(s3_scenario, monkeypatch):
    base = s3_scenario.publish("signed", [ISO], "immediate")
    settings = dataclasses.replace(s3_scenario.settings, storage_redirect="presigned")
    monkeypatch.setenv("PULP_CONTENT_STORAGE_REDIRECT", "presigned")  # for `serve --workers`
    path = base + ISO.relative_path
    with running_service(settings) as client:
        moved = client.get(path)
        assert moved.status == 302 and moved.headers["Cache-Control"] == "no-store"
        location = moved.headers["Location"]
        with urllib.request.urlopen(location, timeout=30) as reply:
            assert reply.read() == ISO.content()
            assert reply.headers["Content-Type"] == "application/x-iso9660-image"
            disposition = reply.headers["Content-Disposition"]
            assert disposition == "attachment; filename*=UTF-8''disk.iso"
        ranged = urllib.request.Request(location, headers={"Range": "bytes=5-9"})
        with urllib.request.urlopen(ranged, timeout=30) as reply:
            assert reply.status == 206 and reply.read() == ISO.content()[5:10]
        # Answered here, from the row, with no redirect: HEAD and conditional requests.
        assert client.head(path).status == 200
        assert client.get(path, {"If-None-Match": f'"{sha256(ISO)}"'}).status == 304
    unsigned = location.split("?", 1)[0]
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(unsigned, timeout=30)
    refused.value.close()  # its body's socket
    assert refused.value.code == 403


def test_sync_immediate_uploads_and_keeps_nothing_local(s3_scenario, s3_server):
    s3_scenario.publish("eager", [BIG, SMALL, ISO], "immediate")
    keys = s3_server.object_keys()
    assert all(key_of(s3_scenario, spec) in keys for spec in (BIG, SMALL, ISO))
    assert no_local_artifacts(s3_scenario)
    assert open_storage(s3_scenario.settings).partials() == []
    report = run_command("storage", "check", env=dict(os.environ))
    assert report.returncode == 0 and report.stdout == "", report.stdout


def test_storage_check_reports_an_orphan_object_and_repair_removes_it(s3_scenario, s3_server):
    s3_scenario.publish("checked", [SMALL], "immediate")
    stray = b"bytes no row knows"
    orphan = artifact_name(hashlib.sha256(stray).hexdigest())
    prefix = s3_scenario.settings.s3_location[1]
    s3_server.client().put_object(Bucket=s3_server.bucket, Key=prefix + orphan, Body=stray)
    report = run_command("storage", "check", env=dict(os.environ))
    assert report.returncode == 1
    assert report.stdout.splitlines() == [f"file without row: {orphan}"]
    repaired = run_command("storage", "check", "--repair", env=dict(os.environ))
    assert repaired.stdout.splitlines() == [f"file without row: {orphan}: repaired, removed"]
    assert prefix + orphan not in s3_server.object_keys()
    assert key_of(s3_scenario, SMALL) in s3_server.object_keys()


def test_a_killed_sync_leaves_no_row_without_its_object(s3_scenario, s3_server):
    """A sync is killed after uploading its files and before its rows commit (the
    database holds it up): no row names a missing object; `storage check` reports the
    unfinished saves, and the next start of the service removes the objects."""

    files = [FileSpec(f"k{i}.bin", 50_000 + i, 95) for i in range(3)]
    url = s3_scenario.remote.add_repository("killed", files)
    s3_scenario.cli("remote", "create", "killed", "--url", url, "--policy", "immediate")
    s3_scenario.cli("repository", "create", "killed", "--remote", "killed")
    storage = open_storage(s3_scenario.settings)
    try:
        _kill_a_sync_after_its_uploads(s3_scenario, storage, url)
    finally:
        storage.close()


def _kill_a_sync_after_its_uploads(s3_scenario: Scenario, storage, url: str) -> None:
    from django.db import connection, transaction

    from pulp_content.service.models import Artifact

    with transaction.atomic():  # a write lock the sync's commit waits for
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("LOCK TABLE service_artifact IN EXCLUSIVE MODE")
        else:
            from pulp_content.service.models import Remote

            Remote.objects.filter(name="killed").update(url=url)
        sync = subprocess.Popen(
            [*CLI, "repository", "sync", "killed"],
            env=dict(os.environ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def all_uploaded() -> bool:
            return len([p for p in storage.placements() if storage.exists(p.name)]) == 3

        assert eventually(all_uploaded, timeout=30)
        sync.send_signal(signal.SIGKILL)
        sync.wait()
    assert Artifact.objects.count() == 0
    uploaded = [p.name for p in storage.placements()]
    report = run_command("storage", "check", env=dict(os.environ))
    assert report.returncode == 1, report.stderr
    assert sorted(report.stdout.splitlines()) == sorted(f"unfinished save: {n}" for n in uploaded)

    with running_service(s3_scenario.settings) as client:
        assert client.get("/pulp/content/").status == 200
        # Each worker sweeps as it starts; one may answer while the other still removes
        # objects (with `serve --workers 2` a test saw the last one still there).
        assert eventually(lambda: storage.placements() == [])
        assert not any(storage.exists(name) for name in uploaded)
    again = run_command("storage", "check", env=dict(os.environ))
    assert again.returncode == 0 and again.stdout == "", again.stdout


def test_a_large_lazy_fetch_is_uploaded_in_parts_and_read_back_whole(s3_scenario, s3_server):
    base = s3_scenario.publish("large", [LARGE])
    expected = hashlib.sha256(LARGE.content()).hexdigest()
    with running_service(s3_scenario.settings) as client:
        first = client.get(base + LARGE.relative_path)
        assert first.status == 200 and hashlib.sha256(first.body).hexdigest() == expected
        assert eventually(lambda: linked(LARGE.relative_path), timeout=60)
        head = s3_server.client().head_object(
            Bucket=s3_server.bucket, Key=key_of(s3_scenario, LARGE)
        )
        assert head["ContentLength"] == LARGE.size
        assert head["ETag"].strip('"').endswith("-2")  # two parts of 16 MiB at most
        again = client.get(base + LARGE.relative_path, {"Range": "bytes=16777000-16777999"})
        assert again.status == 206 and again.body == LARGE.content()[16777000:16778000]
    assert s3_scenario.remote.count(f"/large/{LARGE.relative_path}") == 1


def test_readiness_says_storage_is_down_without_its_bucket(s3_db):
    url = f"s3://absent-{uuid.uuid4().hex[:12]}"  # SeaweedFS makes a bucket on upload
    # In this process whatever the workers: `serve` is waited for until it is ready.
    server = ServiceServer(dataclasses.replace(s3_db, storage_url=url))
    with Background(server):
        ready = Client(server).get("/readyz")
        assert ready.status == 503 and b'"storage": "down"' in ready.body
    with running_service(s3_db) as client:
        assert client.get("/readyz").status == 200


SHARED = FileSpec("shared.img", 2 * 1024 * 1024, 11)
SLOW = Fault("bandwidth", bytes_per_second=4 * 1024 * 1024)  # about half a second


def test_workers_share_one_download_and_its_upload(s3_scenario, s3_server):
    """Two workers on one host (one local partial file, claimed by one of them): 20
    clients split across both, one upstream GET, one object; the follower in the other
    worker learns of the save from the bucket once the partial file is gone."""
    base = s3_scenario.publish("herd", [SHARED])
    s3_scenario.remote.set_fault("herd", SLOW)
    path = base + SHARED.relative_path
    second = ServiceServer(s3_scenario.settings)
    with running_service(s3_scenario.settings) as first, Background(second):
        clients = [first, Client(second)]
        with ThreadPoolExecutor(20) as pool:
            replies = list(pool.map(lambda i: clients[i % 2].get(path), range(20)))
    assert all(r.status == 200 and r.complete for r in replies)
    assert all(r.body == SHARED.content() for r in replies)
    assert s3_scenario.remote.count(f"/herd/{SHARED.relative_path}") == 1
    assert eventually(lambda: linked(SHARED.relative_path))
    assert key_of(s3_scenario, SHARED) in s3_server.object_keys()
    assert open_storage(s3_scenario.settings).partials() == []
    assert no_local_artifacts(s3_scenario)


def test_a_corrupt_upstream_leaves_nothing_in_the_bucket(s3_scenario, s3_server):
    base = s3_scenario.publish("corrupt", [SHARED])
    s3_scenario.remote.set_fault("corrupt", Fault("wrong_bytes"))
    with running_service(s3_scenario.settings) as client:
        reply = client.get(base + SHARED.relative_path)
        assert not reply.complete
    assert not linked(SHARED.relative_path)
    assert key_of(s3_scenario, SHARED) not in s3_server.object_keys()
    assert open_storage(s3_scenario.settings).partials() == []


def test_streamed_content_touches_neither_the_bucket_nor_the_disk(s3_scenario, s3_server):
    base = s3_scenario.publish("passing", [BIG], "streamed")
    with running_service(s3_scenario.settings) as client:
        for _ in range(2):
            reply = client.get(base + BIG.relative_path)
            assert reply.status == 200 and reply.body == BIG.content()
    assert s3_scenario.remote.count(f"/passing/{BIG.relative_path}") == 2
    assert key_of(s3_scenario, BIG) not in s3_server.object_keys()
    assert open_storage(s3_scenario.settings).partials() == []
    assert no_local_artifacts(s3_scenario)


def test_a_failed_upload_commits_no_row(s3_scenario, monkeypatch):
    """The bucket cannot be reached when the upload begins: the client got the verified
    bytes, no row names an object, nothing is left on the disk; the next request
    downloads again."""
    base = s3_scenario.publish("refused", [BIG])
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    server = ServiceServer(s3_scenario.settings)
    with Background(server):
        client = Client(server)
        for attempt in (1, 2):
            reply = client.get(base + BIG.relative_path)
            assert reply.status == 200 and reply.body == BIG.content()
            assert eventually(lambda a=attempt: s3_scenario.remote.count("/refused/big.bin") == a)
            assert eventually(lambda: not server.app[DOWNLOADS].active, timeout=30)
            assert not linked(BIG.relative_path)
    assert open_storage(s3_scenario.settings).partials() == []


def test_a_row_whose_object_is_gone_is_a_404_as_on_a_disk(s3_scenario, s3_server):
    base = s3_scenario.publish("vanished", [BIG, SMALL], "immediate")
    for spec in (BIG, SMALL):
        s3_server.client().delete_object(Bucket=s3_server.bucket, Key=key_of(s3_scenario, spec))
    with running_service(s3_scenario.settings) as client:
        for spec in (BIG, SMALL):
            reply = client.get(base + spec.relative_path)
            assert reply.status == 404 and b"missing from storage" in reply.body
    report = run_command("storage", "check", env=dict(os.environ))
    assert sorted(report.stdout.splitlines()) == sorted(
        f"row without file: {artifact_name(sha256(spec))}" for spec in (BIG, SMALL)
    )


def test_pull_through_is_uploaded_then_served_from_the_bucket(s3_scenario, s3_server):
    s3_scenario.remote.add_repository("pt", [BIG, SMALL])
    url = s3_scenario.remote.base_url + "/pt/"
    s3_scenario.cli("remote", "create", "pt", "--url", url, "--policy", "on_demand")
    s3_scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pt")
    base = s3_scenario.settings.content_prefix + "pt/"
    with running_service(s3_scenario.settings) as client:
        for spec in (BIG, SMALL):
            first = client.get(base + spec.relative_path)
            assert first.status == 200 and first.body == spec.content()
            assert eventually(lambda spec=spec: linked(spec.relative_path))
        for spec in (BIG, SMALL):
            again = client.get(base + spec.relative_path)
            assert again.status == 200 and again.body == spec.content()
            assert s3_scenario.remote.count(f"/pt/{spec.relative_path}") == 1
            assert key_of(s3_scenario, spec) in s3_server.object_keys()
    assert no_local_artifacts(s3_scenario)
    assert open_storage(s3_scenario.settings).partials() == []


def test_storage_check_without_the_bucket_is_one_line(s3_scenario):
    s3_scenario.publish("away", [SMALL], "immediate")
    env = dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{free_port()}")  # nobody there
    report = run_command("storage", "check", env=env)
    assert report.returncode == 1 and report.stdout == ""
    assert report.stderr.startswith("Error: the bucket did not answer a LIST: "), report.stderr
    assert len(report.stderr.splitlines()) == 1


HERD = FileSpec("herd.img", 24 * 1024 * 1024 + 3, 12)


def fetch(port: int, path: str) -> tuple[int, str]:
    """A whole GET on a connection of its own: the status and the sha256 of the body."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as answer:
            return answer.status, hashlib.sha256(answer.read()).hexdigest()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def read_some(port: int, path: str, got: list[int]) -> tuple[int, bytes, bool]:
    """A GET read as it comes (`got[0]`: bytes so far): the status, the body, and
    whether it came whole (a connection cut short is not an error here)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("GET", path)
        answer = conn.getresponse()
        body = b""
        try:
            while block := answer.read1(65536):
                body += block
                got[0] = len(body)
        except (http.client.IncompleteRead, ConnectionError):
            return answer.status, body, False
        return answer.status, body, len(body) == int(answer.headers["Content-Length"])
    finally:
        conn.close()


def two_hosts(scenario: Scenario, tmp_path, monkeypatch, round_name: str) -> list[Settings]:
    """Settings of two hosts with homes of their own (nothing on disk shared) on one
    database and one bucket, and the key file the encrypted secrets need, which every
    host of a service has (here: the test's)."""
    monkeypatch.setenv("PULP_CONTENT_SECRET_KEY_FILE", str(scenario.settings.secret_key_path))
    return [
        dataclasses.replace(scenario.settings, home=tmp_path / round_name / host)
        for host in ("host-a", "host-b")
    ]


@pytest.mark.postgres_only
def test_two_hosts_make_one_upstream_download(s3_scenario, s3_server, tmp_path, monkeypatch):
    """Two `serve` processes, one PostgreSQL, one bucket, nothing on disk shared: 20
    clients split over both on one uncached on_demand artifact make one upstream GET,
    and each gets the same bytes (the second host reads the first one's download, at
    its peer endpoint); restarted with empty homes, both serve it from the bucket."""
    base = s3_scenario.publish("hosts", [HERD])
    path, upstream_path = base + HERD.relative_path, "/hosts/" + HERD.relative_path
    s3_scenario.remote.set_fault("hosts", Fault("bandwidth", bytes_per_second=12 * 2**20))
    a, b = two_hosts(s3_scenario, tmp_path, monkeypatch, "first")
    with ServiceProcess(a, workers=1) as host_a, ServiceProcess(b, workers=1) as host_b:
        with ThreadPoolExecutor(20) as pool:
            first = pool.submit(fetch, host_a.port, path)
            assert eventually(lambda: s3_scenario.remote.count(upstream_path) == 1)
            ports = [(host_a, host_b)[n % 2].port for n in range(19)]
            rest = [pool.submit(fetch, port, path) for port in ports]
            answers = [first.result(), *(future.result() for future in rest)]
        assert answers == [(200, sha256(HERD))] * 20
        assert s3_scenario.remote.count(upstream_path) == 1
        assert eventually(lambda: linked(HERD.relative_path))
        # Every client of host b was answered from host a's download (logged as "peer").
        on_b = ports.count(host_b.port)
        assert eventually(lambda: host_b.output().count("ms peer\n") == on_b), host_b.output()
    s3_scenario.remote.set_fault("hosts", None)
    a, b = two_hosts(s3_scenario, tmp_path, monkeypatch, "again")
    with ServiceProcess(a, workers=1) as host_a, ServiceProcess(b, workers=1) as host_b:
        for host in (host_a, host_b):
            assert fetch(host.port, path) == (200, sha256(HERD))
    assert s3_scenario.remote.count(upstream_path) == 1
    assert key_of(s3_scenario, HERD) in s3_server.object_keys()
    assert not (tmp_path / "first" / "host-b" / "storage" / "artifact").exists()


@pytest.mark.postgres_only
def test_a_killed_host_leaves_the_others_clients_whole_or_cut_and_nothing_half_saved(
    s3_scenario, s3_server, tmp_path, monkeypatch
):
    """kill -9 of the host that downloads, while the other host's client reads that
    download from it: that client's answer is whole and right or cut short (never wrong
    bytes presented as whole), no object or row of the artifact is left, and the next
    request on the surviving host downloads it anew and saves it."""
    base = s3_scenario.publish("killed", [HERD])
    path, upstream_path = base + HERD.relative_path, "/killed/" + HERD.relative_path
    s3_scenario.remote.set_fault("killed", Fault("bandwidth", bytes_per_second=4 * 2**20))
    a, b = two_hosts(s3_scenario, tmp_path, monkeypatch, "killed")
    with ServiceProcess(b, workers=1) as host_b:
        with ServiceProcess(a, workers=1) as host_a, ThreadPoolExecutor(2) as pool:
            pool.submit(fetch, host_a.port, path)
            assert eventually(lambda: s3_scenario.remote.count(upstream_path) == 1)
            got: list[int] = [0]
            follower = pool.submit(read_some, host_b.port, path, got)
            assert eventually(lambda: got[0] > 2**20)  # host b reads host a's download
            os.kill(host_a.serving_pids()[0], signal.SIGKILL)
            status, body, whole = follower.result()
        assert status == 200
        assert not whole or hashlib.sha256(body).hexdigest() == sha256(HERD)
        assert not linked(HERD.relative_path)
        assert key_of(s3_scenario, HERD) not in s3_server.object_keys()
        s3_scenario.remote.set_fault("killed", None)
        assert fetch(host_b.port, path) == (200, sha256(HERD))
        assert eventually(lambda: linked(HERD.relative_path))
    assert key_of(s3_scenario, HERD) in s3_server.object_keys()


@pytest.mark.postgres_only
def test_the_peer_endpoint_answers_only_a_signed_request_for_a_download_running_here(
    s3_scenario,
):
    """/_peer (beside the content prefix, never in it) refuses a request without a token
    made with the hosts' secret for that very download, and starts no download: one it
    does not run is a 410."""
    from pulp_content.service.keys import PEERS
    from pulp_content.service.peers import HEADER, ROUTE

    base = s3_scenario.publish("peered", [BIG])
    path = base + BIG.relative_path
    name = sha256(BIG)  # its download's name on every host
    url = f"{ROUTE}?{urllib.parse.urlencode({'name': name, 'path': path})}"
    server = ServiceServer(s3_scenario.settings)
    with Background(server):
        client = Client(server)
        peers = server.app[PEERS]  # type: ignore[index]
        assert peers is not None
        assert client.get(url).status == 403
        assert client.get(url, {HEADER: "4102444800.00ff"}).status == 403
        assert client.get(url, {HEADER: peers.token(name, base + "other")}).status == 403
        assert client.get(url, {HEADER: peers.token(name, path)}).status == 410
        inside = s3_scenario.settings.content_prefix + url.lstrip("/")
        assert client.get(inside, {HEADER: peers.token(name, path)}).status == 404
    assert s3_scenario.remote.count("/peered/" + BIG.relative_path) == 0  # nothing began
