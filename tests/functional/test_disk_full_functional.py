"""A full disk under a running service: every failed download cleans up after itself."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.functional.conftest import WORKERS, Client, ServiceProcess
from tests.helpers import eventually

pytestmark = pytest.mark.functional

BIG = FileSpec("big.bin", 2 * 1024 * 1024, 71)
PATH = "/pulp/content/full/big.bin"


def mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        message = f"cannot mount a tmpfs here (needs root): {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def small_storage(db) -> Iterator[Path]:
    """The storage directory on a 1 MiB tmpfs: a disk that fills up."""
    root = db.storage_root
    root.mkdir(parents=True, exist_ok=True)
    mount("-t", "tmpfs", "-o", "size=1m", "tmpfs", str(root))
    try:
        yield root
    finally:
        subprocess.run(["umount", "-l", str(root)], check=False)


def saved() -> bool:
    from pulp_content.service.models import ContentArtifact

    return ContentArtifact.objects.filter(relative_path="big.bin", artifact__isnull=False).exists()


def test_a_full_disk_fails_each_download_cleanly(scenario, small_storage):
    """ENOSPC while a 2 MiB lazy artifact is written to a 1 MiB disk: the client sees an
    incomplete transfer, the partial file and the claim go, later requests fail as fast
    (none hangs, no descriptor is left behind), the artifact downloads once there is
    room, and SIGTERM stops the service at once."""
    scenario.publish("full", [BIG], "on_demand")
    storage = open_storage(scenario.settings)
    partial = storage.partial_of(hashlib.sha256(BIG.content()).hexdigest())
    with ServiceProcess(scenario.settings, WORKERS) as served:
        client = Client(served)
        first = client.get(PATH)
        assert first.status == 200 and not first.complete
        assert len(first.body) < BIG.size
        assert eventually(lambda: storage.partials() == [] and not storage.locks.held(partial))

        def fail_again(times: int) -> None:
            for _ in range(times):  # each would hang, and keep a descriptor, if one leaked
                again = client.get(PATH)
                assert again.status in (200, 507) and not again.complete

        # Warm up first: every worker opens what it keeps once (its database and upstream
        # connections, its metrics files) the first time it serves such a request.
        fail_again(10)
        before = served.descriptors()
        fail_again(20)
        assert client.get("/pulp/content/").status == 200
        after = served.descriptors()
        assert len(after) - len(before) < 10, sorted(set(after) - set(before))
        assert eventually(lambda: storage.partials() == [] and not storage.locks.held(partial))
        assert not saved()
        assert "No space left on device" in served.output()
        assert not storage.path_of(
            artifact_name(hashlib.sha256(BIG.content()).hexdigest())
        ).exists()

        mount("-o", "remount,size=8m", str(small_storage))  # room again
        fine = client.get(PATH)
        assert fine.complete and fine.body == BIG.content()
        assert eventually(saved)
        # Nothing is left waiting on a download: the service stops well inside the 30 s
        # it would give one to finish.
        assert served.stop(timeout=20) == 0
    assert storage.partials() == [] and storage.placements() == []
