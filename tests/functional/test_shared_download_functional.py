"""One upstream download per lazy artifact, however many clients ask at once."""

from __future__ import annotations

import hashlib
import http.client
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.storage import FileSystemStorage, open_storage
from tests.helpers import eventually

pytestmark = pytest.mark.functional

BIG = FileSpec("big.img", 2 * 1024 * 1024, 11)
PATH = "/pulp/content/shared/big.img"
SLOW = Fault("bandwidth", bytes_per_second=4 * 1024 * 1024)  # about half a second


def linked() -> bool:
    from pulp_content.service.models import ContentArtifact

    return ContentArtifact.objects.filter(relative_path="big.img", artifact__isnull=False).exists()


def begin_download(shared, client) -> tuple[threading.Thread, list]:
    """GET PATH on a thread of its own; returns once the upstream has been asked. Join the
    thread, then the list holds the reply."""
    replies: list = []
    thread = threading.Thread(target=lambda: replies.append(client.get(PATH)))
    thread.start()
    assert eventually(lambda: shared.remote.count("/shared/big.img") == 1)
    return thread, replies


def written(scenario) -> int:
    """Bytes of the download in progress on disk (its partial file), 0 before it starts."""
    partials = FileSystemStorage(scenario.settings.storage_root).partials()
    return sum(p.stat().st_size for p in partials if p.exists())


@pytest.fixture
def shared(scenario):
    scenario.publish("shared", [BIG], "on_demand")
    return scenario


def test_concurrent_clients_share_one_upstream_download(shared, client):
    shared.remote.set_fault("shared", SLOW)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: client.get(PATH), range(20)))
    assert all(r.status == 200 and r.complete for r in replies)
    assert all(r.body == BIG.content() for r in replies)
    assert shared.remote.count("/shared/big.img") == 1
    assert eventually(linked)


def test_late_joiner_gets_the_bytes_on_disk_then_the_live_ones(shared, client):
    shared.remote.set_fault("shared", SLOW)
    starter, first = begin_download(shared, client)
    # Well under way and not finished: some bytes on disk, more to come.
    assert eventually(lambda: 100 < written(shared) < BIG.size)
    assert starter.is_alive()
    late = client.get(PATH, headers={"Range": "bytes=100-"})
    starter.join()
    assert first[0].body == BIG.content()
    assert late.status == 206 and late.body == BIG.content()[100:]
    assert shared.remote.count("/shared/big.img") == 1


def test_a_failed_shared_download_aborts_every_client_and_the_next_retries(shared, client):
    shared.remote.set_fault("shared", Fault("truncate", at=1024 * 1024))
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: client.get(PATH), range(5)))
    assert all(not r.complete for r in replies)
    assert all(len(r.body) < BIG.size for r in replies)
    shared.remote.set_fault("shared", None)
    again = client.get(PATH)
    assert again.complete and again.body == BIG.content()


def test_on_demand_download_completes_after_every_client_left(shared, client):
    shared.remote.set_fault("shared", SLOW)
    with socket.create_connection(("127.0.0.1", client.server.port)) as sock:
        sock.sendall(f"GET {PATH} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert sock.recv(1024).startswith(b"HTTP/1.1 200")
    # The only client hung up after the first bytes: the artifact is still saved.
    assert eventually(linked)
    shared.remote.set_fault("shared", None)
    assert client.get(PATH).body == BIG.content()
    assert shared.remote.count("/shared/big.img") == 1


def test_a_slow_client_holds_back_neither_the_download_nor_the_others(scenario, client):
    """A client that stops reading after the first bytes: another client of the same
    download still gets every byte, and the artifact is saved, while the slow one is
    still connected (its bytes wait in the file, not in the service's memory)."""
    big = FileSpec("large.img", 16 * 1024 * 1024, 12)
    # The premise: the kernel cannot hold the rest of the body for the slow client (its
    # receive buffer is set to 4 KiB below; a send buffer grows to tcp_wmem's maximum).
    with open("/proc/sys/net/ipv4/tcp_wmem") as wmem:
        assert int(wmem.read().split()[2]) < big.size // 2
    scenario.publish("slow", [big], "on_demand")
    scenario.remote.set_fault("slow", Fault("bandwidth", bytes_per_second=32 * 1024 * 1024))
    path = "/pulp/content/slow/large.img"
    with socket.socket() as slow:
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", client.server.port))
        slow.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        assert slow.recv(1024).startswith(b"HTTP/1.1 200")
        fast = client.get(path)
        assert fast.complete and fast.body == big.content()

        def saved() -> bool:
            from pulp_content.service.models import ContentArtifact

            return ContentArtifact.objects.filter(
                relative_path="large.img", artifact__isnull=False
            ).exists()

        assert eventually(saved)
    assert scenario.remote.count("/slow/large.img") == 1


def test_streamed_download_stops_when_its_last_client_leaves(scenario, client):
    scenario.publish("streamy", [BIG], "streamed")
    scenario.remote.set_fault("streamy", Fault("bandwidth", bytes_per_second=512 * 1024))
    conn = http.client.HTTPConnection("127.0.0.1", client.server.port)
    conn.request("GET", "/pulp/content/streamy/big.img")
    response = conn.getresponse()
    response.read(1000)
    conn.close()

    def nothing_left() -> bool:
        return (
            scenario.remote.sending["/streamy/big.img"] == 0
            and not open_storage(scenario.settings).partials()
        )

    # At 512 KiB/s the 2 MiB download would take four seconds; the service hangs up on
    # the upstream well before, and leaves no partial file.
    assert eventually(nothing_left, timeout=2.0)


def test_a_range_ahead_of_the_download_comes_straight_from_the_upstream(shared, client):
    """The middle of an uncached artifact: forwarded upstream as a Range, answered
    without waiting for the bytes before it; the whole artifact is still saved once."""
    shared.remote.set_fault("shared", Fault("bandwidth", bytes_per_second=1024 * 1024))
    response = client.get(PATH, headers={"Range": "bytes=1500000-1500999"})
    assert response.status == 206
    assert response.body == BIG.content()[1500000:1501000]
    assert response.headers["Content-Range"] == f"bytes 1500000-1500999/{BIG.size}"
    assert shared.remote.ranged["/shared/big.img"] == 1
    assert eventually(linked, timeout=10)
    assert shared.remote.count("/shared/big.img") == 2  # the range, and one full download


def test_a_range_of_streamed_content_downloads_only_the_range(scenario, client):
    scenario.publish("streamy", [BIG], "streamed")
    response = client.get("/pulp/content/streamy/big.img", headers={"Range": "bytes=1000-1999"})
    assert response.status == 206 and response.body == BIG.content()[1000:2000]
    assert scenario.remote.count("/streamy/big.img") == 1
    assert scenario.remote.ranged["/streamy/big.img"] == 1


def test_a_range_with_the_last_byte_waits_for_the_verified_whole(scenario, client):
    """The end of a file is never forwarded upstream: it comes from the one download,
    which sends the last byte once the whole file checks out (streamed content too)."""
    scenario.publish("streamy", [BIG], "streamed")
    response = client.get("/pulp/content/streamy/big.img", headers={"Range": "bytes=-1000"})
    assert response.status == 206 and response.body == BIG.content()[-1000:]
    assert scenario.remote.count("/streamy/big.img") == 1
    assert scenario.remote.ranged["/streamy/big.img"] == 0


def test_workers_share_one_download_through_the_storage(shared, client, second_worker):
    shared.remote.set_fault("shared", SLOW)
    starter, first = begin_download(shared, client)
    other = second_worker.get(PATH)
    starter.join()
    assert other.status == 200 and other.complete and other.body == BIG.content()
    assert first[0].body == BIG.content()
    assert shared.remote.count("/shared/big.img") == 1
    assert eventually(linked)
    assert open_storage(shared.settings).partials() == []


def test_a_failed_download_in_another_worker_aborts_its_followers(shared, client, second_worker):
    # Stalls past the remote's two-second read timeout half-way: not resumable.
    shared.remote.set_fault("shared", Fault("stall", at=1024 * 1024, delay=5.0))
    starter, first = begin_download(shared, client)
    other = second_worker.get(PATH)
    starter.join()
    assert not first[0].complete and not other.complete
    assert shared.remote.count("/shared/big.img") == 1
    assert not linked()


def test_a_late_range_in_another_worker_reads_the_partial_file(shared, client, second_worker):
    """Bytes another worker has already written are not fetched upstream again."""
    shared.remote.set_fault("shared", SLOW)
    starter, first = begin_download(shared, client)
    partial = open_storage(shared.settings).partial_of(hashlib.sha256(BIG.content()).hexdigest())
    assert eventually(lambda: partial.exists() and partial.stat().st_size > 1000)
    late = second_worker.get(PATH, headers={"Range": "bytes=1000-"})
    starter.join()
    assert late.status == 206 and late.body == BIG.content()[1000:]
    assert first[0].body == BIG.content()
    assert shared.remote.count("/shared/big.img") == 1
    assert shared.remote.ranged["/shared/big.img"] == 0
