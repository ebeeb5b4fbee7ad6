"""Saving a verified download: racing savers leave one row and one file."""

from __future__ import annotations

import hashlib
import threading

from pulp_content.service import ingest
from pulp_content.service.storage import open_storage
from pulp_content.service.verify import Download


def test_two_savers_of_the_same_bytes_leave_one_artifact_and_one_file(db):
    from django.db import connections

    from pulp_content.service.models import Artifact

    storage = open_storage(db)
    data = b"the same bytes, downloaded twice" * 1000
    sha256 = hashlib.sha256(data).hexdigest()
    errors: list[BaseException] = []
    barrier = threading.Barrier(2)

    def save() -> None:
        partial = storage.new_partial()
        partial.write_bytes(data)
        try:
            barrier.wait()
            ingest.save(storage, [Download(partial, len(data), {"sha256": sha256})], lambda: None)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=save) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert Artifact.objects.filter(sha256=sha256).count() == 1
    stored = storage.path_of(Artifact.objects.get(sha256=sha256).file)
    assert stored.read_bytes() == data
    assert [p for p in stored.parent.iterdir()] == [stored]
    assert storage.partials() == [] and storage.placements() == []
