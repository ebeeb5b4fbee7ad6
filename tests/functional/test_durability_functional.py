"""Saves that survive a power cut, and what killed ones leave behind, swept at start-up."""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.functional.conftest import running_service
from tests.helpers import eventually, need_tool, run_command

pytestmark = pytest.mark.functional

FILE = FileSpec("d.bin", 300_000, 94)


def traced_fetch(scenario, path: str, trace: Path) -> None:
    """GET `path` from `pulp-content serve` running under strace (file and database
    writes, with the paths of their descriptors), then stop the service."""
    port = free_port()
    calls = "trace=fsync,fdatasync,rename,pwrite64,write,sendto"
    command = [need_tool("strace"), "-f", "-y", "-s", "32", "-e", calls, "-o", str(trace)]
    command += [*CLI, "serve", "--bind", f"127.0.0.1:{port}"]
    process = subprocess.Popen(
        command,
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as reply:
            assert reply.read() == FILE.content()
        assert eventually(linked)
    finally:
        service = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        os.kill(int(service[0]), signal.SIGTERM)  # strace ends with what it traces
        process.wait(timeout=60)


def linked() -> bool:
    from pulp_content.service.models import ContentArtifact

    return ContentArtifact.objects.filter(relative_path="d.bin", artifact__isnull=False).exists()


def test_a_saved_artifact_is_on_the_disk_before_its_row_commits(scenario, tmp_path):
    """The system calls of a lazy save, in order: the file's bytes are flushed, it is
    renamed into place, the directory holding the new name is flushed, and only then
    does the database commit the row that names it. A power cut at any point leaves
    either no row, or a row and the whole file."""
    base = scenario.publish("durable", [FILE], "on_demand")
    trace = tmp_path / "trace"
    traced_fetch(scenario, f"{base}d.bin", trace)
    sha256 = hashlib.sha256(FILE.content()).hexdigest()
    stored = open_storage(scenario.settings).path_of(artifact_name(sha256))
    lines = trace.read_text().splitlines()

    def first(pattern: str, after: int = -1) -> int:
        found = [i for i, line in enumerate(lines) if i > after and re.search(pattern, line)]
        assert found, f"no {pattern!r} after line {after}:\n" + "\n".join(lines[-40:])
        return found[0]

    partial = re.escape(f"{sha256}.partial>")
    synced = first(rf"fsync\(\d+<[^>]*{partial}\)")
    renamed = first(rf'rename\("[^"]*{sha256}.partial", "{re.escape(str(stored))}"', synced)
    directory = first(rf"fsync\(\d+<{re.escape(str(stored.parent))}>\)", renamed)
    # SQLite commits by writing its write-ahead log; PostgreSQL by a COMMIT on its socket.
    committed = first(r"(-wal>, |COMMIT)", synced)
    assert synced < renamed < directory < committed


def test_start_up_removes_what_a_killed_sync_placed_without_its_rows(scenario):
    """A sync is killed after placing its files and before its rows commit (the
    database holds it up): the next start of the service removes those files, and
    `storage check` finds nothing wrong afterwards."""
    from django.db import connection, transaction

    files = [FileSpec(f"k{i}.bin", 50_000 + i, 95) for i in range(3)]
    url = scenario.remote.add_repository("killed", files)
    scenario.cli("remote", "create", "killed", "--url", url, "--policy", "immediate")
    scenario.cli("repository", "create", "killed", "--remote", "killed")
    storage = open_storage(scenario.settings)
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

        def all_placed() -> bool:
            placements = storage.placements()
            done = [p for p in placements if storage.path_of(p.name).exists()]
            return len(done) == len(files)

        assert eventually(all_placed, timeout=30)
        sync.send_signal(signal.SIGKILL)
        sync.wait()
    placed = [storage.path_of(p.name) for p in storage.placements()]

    report = run_command("storage", "check", env=dict(os.environ))
    assert report.returncode == 1, report.stderr
    assert sorted(report.stdout.splitlines()) == sorted(
        f"unfinished save: {p.name}" for p in storage.placements()
    )

    with running_service(scenario.settings) as client:
        assert client.get("/pulp/content/").status == 200
        assert storage.placements() == []
        assert not any(path.exists() for path in placed)
    again = run_command("storage", "check", env=dict(os.environ))
    assert again.returncode == 0 and again.stdout == "", again.stdout
