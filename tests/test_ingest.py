"""Saving a verified download: racing savers leave one row and one file."""

from __future__ import annotations

import asyncio
import hashlib
import threading

from pulp_content.fixtures.remote import FileSpec
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


def test_a_failure_this_process_records_is_known_to_its_next_request(scenario):
    """Found under load: right after a failed download, the same worker's next request
    still tried the failed remote artifact first, because its cache heard of the change
    only from the invalidation watcher (a poll on SQLite, a notification on PostgreSQL).
    The app is not started here, so no watcher runs: only the save path can tell it."""
    from pulp_content.service.app import create_app
    from pulp_content.service.keys import LOCATOR, PERSIST

    path = scenario.publish("lazy", [FileSpec("f.bin", 1000, 3)], "on_demand") + "f.bin"

    async def fail_once() -> None:
        app = create_app(scenario.settings)
        locate, cache = app[LOCATOR], app[LOCATOR].cache
        cache.set_live(True)  # as the watcher does once it follows changes
        try:
            src = (await locate(path)).resolution
            assert cache.get(path) is not None
            await app[PERSIST].mark_failed(src, src.remote_artifacts[0])
            assert cache.get(path) is None
            assert (await locate(path)).resolution.remote_artifacts[0].failed_at is not None
        finally:
            app[PERSIST].close()

    asyncio.run(fail_once())
