"""`pulp-content storage check [--repair]` in a fresh process, against real damage."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.functional.conftest import running_service
from tests.helpers import run_command

pytestmark = pytest.mark.functional

FILES = [FileSpec(f"c{i}.bin", 40_000 + i, 96) for i in range(3)]


def check(*options: str):
    return run_command("storage", "check", *options, env=dict(os.environ))


def name_of(spec: FileSpec) -> str:
    return artifact_name(hashlib.sha256(spec.content()).hexdigest())


def test_check_reports_each_kind_of_damage_and_repair_undoes_it(scenario):
    base = scenario.publish("damaged", FILES, "immediate")
    storage = open_storage(scenario.settings)
    missing, corrupt, fine = (name_of(spec) for spec in FILES)
    storage.path_of(missing).unlink()  # a row without its file
    storage.path_of(corrupt).write_bytes(b"not what the name says")  # wrong bytes
    stray = b"bytes no row knows"
    orphan = artifact_name(hashlib.sha256(stray).hexdigest())  # a file without a row
    storage.path_of(orphan).parent.mkdir(parents=True, exist_ok=True)
    storage.path_of(orphan).write_bytes(stray)
    leftover = storage.new_partial()
    leftover.write_bytes(b"a crash's partial download")
    wrong = hashlib.sha256(b"not what the name says").hexdigest()

    report = check()
    assert report.returncode == 1, report.stderr
    assert sorted(report.stdout.splitlines()) == sorted(
        [
            f"row without file: {missing}",
            f"wrong bytes: {corrupt} (the bytes hash to {wrong})",
            f"file without row: {orphan}",
            f"partial file of no running download: tmp/{leftover.name}",
        ]
    )
    assert report.stderr == "4 problems, 0 repaired\n"
    as_json = json.loads(check("--json").stdout)
    assert {p["kind"] for p in as_json} == {
        "row without file",
        "wrong bytes",
        "file without row",
        "partial file of no running download",
    }
    assert storage.path_of(orphan).exists()  # reported, nothing changed

    repaired = check("--repair")
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    lines = sorted(repaired.stdout.splitlines())
    assert lines == sorted(
        [
            f"row without file: {missing}: repaired, 1 content unit lazy again; row removed",
            f"wrong bytes: {corrupt} (the bytes hash to {wrong}): repaired, "
            "1 content unit lazy again; row removed; file removed",
            f"file without row: {orphan}: repaired, removed",
            f"partial file of no running download: tmp/{leftover.name}: repaired, removed",
        ]
    )
    assert not storage.path_of(orphan).exists() and not storage.path_of(corrupt).exists()
    assert storage.partials() == []
    again = check()
    assert again.returncode == 0 and again.stdout == "", again.stdout

    # The content whose file was lost or corrupt is lazy again: fetched, right, stored.
    with running_service(scenario.settings) as client:
        for spec in FILES:
            reply = client.get(f"{base}{spec.relative_path}")
            assert reply.status == 200 and reply.body == spec.content()
    assert scenario.remote.count("/damaged/c0.bin") == 2  # the sync, and now
    assert storage.path_of(fine).read_bytes() == FILES[2].content()


def test_check_leaves_what_no_remote_can_bring_back(scenario):
    """A publication's generated PULP_MANIFEST has no remote: its lost file is reported
    and left, and the exit status says a problem remains."""
    scenario.publish("metadata", FILES[:1], "immediate")
    from pulp_content.service.models import PublishedMetadata

    manifest = PublishedMetadata.objects.get().artifact.file
    storage = open_storage(scenario.settings)
    storage.path_of(manifest).unlink()
    repaired = check("--repair")
    assert repaired.returncode == 1
    assert repaired.stdout.splitlines() == [
        f"row without file: {manifest}: not repaired, the metadata of 1 publication: publish again"
    ]
    assert repaired.stderr == "1 problems, 0 repaired\n"


def test_check_on_a_database_that_is_not_there_is_one_line(tmp_path):
    env = {
        **os.environ,
        "PULP_CONTENT_HOME": str(tmp_path),
        "PULP_CONTENT_DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
    }
    done = run_command("storage", "check", env=env)
    assert done.returncode == 1
    assert done.stderr.startswith("Error: cannot open the database: ")
    assert len(done.stderr.strip().splitlines()) == 1
