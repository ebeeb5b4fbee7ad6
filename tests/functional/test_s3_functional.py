"""Artifacts in an S3 bucket (SeaweedFS on loopback, `tests/s3server.py`): lazy saves
upload before their rows commit, stored artifacts are streamed from the bucket (Range
forwarded) or redirected to a presigned URL, sync uploads, `storage check` and the
start-up sweep see the bucket, and nothing is kept on the local disk but downloads in
progress."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess

import pytest

from pulp_content.fixtures.bench import CLI
from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.conftest import Scenario
from tests.functional.conftest import running_service
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

BIG = FileSpec("big.bin", 300_000, 91)  # streamed from the bucket (over SMALL_FILE)
SMALL = FileSpec("notes.txt", 5_000, 92)  # read whole once, then kept in memory
ISO = FileSpec("dir/disk.iso", 200_000, 93)


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
        assert storage.placements() == []
        assert not any(storage.exists(name) for name in uploaded)
    again = run_command("storage", "check", env=dict(os.environ))
    assert again.returncode == 0 and again.stdout == "", again.stdout
