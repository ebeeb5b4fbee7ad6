"""/metrics as Prometheus scrapes it: one scrape is the whole service, whichever gunicorn
worker answers it (`serve --workers 2`, real processes), parsed with prometheus_client's
own parser."""

from __future__ import annotations

import itertools
import tempfile
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import Fault, FileSpec
from tests.functional.conftest import Client, ServiceProcess, ServiceServer
from tests.helpers import Samples, eventually, metric_samples, per_process

pytestmark = pytest.mark.functional

FILE = FileSpec("m.bin", 2000, 71)
DURATION = "pulp_content_request_duration_seconds"


def scrape(port: int) -> Samples:
    """Every sample of one scrape, by name and labels."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as answer:
        return metric_samples(answer.read().decode())


def answered(scraped: Samples, status: str = "2xx") -> float:
    """Requests of this status class, wherever their bytes came from (a small file is
    read from storage once, then from memory)."""
    return sum(
        value
        for (name, labels), value in scraped.items()
        if name == DURATION + "_count" and dict(labels)["status"] == status
    )


def workers(scraped: Samples) -> float:
    return scraped[("pulp_content_worker_processes", ())]


def get(port: int, path: str) -> int:
    """One request on a connection of its own (so gunicorn may hand it to either worker)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as answer:
            answer.read()
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def per_worker(directory: Path) -> dict[int, float]:
    """Requests each worker counted (that have counted any)."""
    counts = {pid: answered(values) for pid, values in per_process(directory).items()}
    return {pid: count for pid, count in counts.items() if count}


def test_one_scrape_of_two_workers_counts_every_request(scenario, tmp_path):
    """N requests, spread over both workers, and every scrape counts exactly N; counters
    never go down from one scrape to the next. No pid label anywhere."""
    base = scenario.publish("m", [FILE], "immediate")
    (tmp_path / "counter_1.db").write_bytes(b"left by an earlier run")
    # PROMETHEUS_MULTIPROC_DIR set, as an operator may.
    with ServiceProcess(scenario.settings, workers=2, metrics_dir=tmp_path) as served:
        workers = served.worker_pids()
        assert not (tmp_path / "counter_1.db").exists()  # cleared at start
        sent = 0

        def both_served() -> bool:
            nonlocal sent
            for _ in range(10):
                assert get(served.port, base + FILE.relative_path) == 200
                sent += 1
            return set(per_worker(tmp_path)) == set(workers)

        assert eventually(both_served, timeout=60), "both workers should answer some"
        # A request is counted as its access log line is written, just after its last
        # byte went out: the client may ask before that.
        assert eventually(lambda: answered(scrape(served.port)) == sent)
        assert sum(per_worker(tmp_path).values()) == sent
        scrapes = [scrape(served.port) for _ in range(6)]  # either worker answers each
        for scraped in scrapes:
            assert answered(scraped) == sent
            assert scraped[("pulp_content_worker_processes", ())] == 2
            assert all("pid" not in dict(labels) for _, labels in scraped)
            assert scraped[("process_resident_memory_bytes", ())] > 0
        more = [get(served.port, base + "missing") for _ in range(3)]
        assert more == [404] * 3
        assert eventually(lambda: answered(scrape(served.port), "4xx") == 3)
        scrapes.append(scrape(served.port))
        assert answered(scrapes[-1]) == sent and answered(scrapes[-1], "4xx") == 3
        for before, after in itertools.pairwise(scrapes):
            for key, value in before.items():
                if key[0].endswith(("_total", "_count", "_bucket", "_sum")):
                    assert after.get(key, 0) >= value, key


def test_downloads_in_flight_and_followers_across_workers(scenario):
    """Three clients of one lazy file on `serve --workers 2`: one upstream download in
    the whole service and three followers, whichever workers they reached; none after."""
    big = FileSpec("big.img", 2 * 1024 * 1024, 74)
    base = scenario.publish("fl", [big], "on_demand")
    scenario.remote.set_fault("fl", Fault("bandwidth", bytes_per_second=1024 * 1024))
    with ServiceProcess(scenario.settings, workers=2) as served:
        with ThreadPoolExecutor(3) as pool:
            fetches = [pool.submit(get, served.port, base + "big.img") for _ in range(3)]

            def now(name: str) -> float:
                return scrape(served.port)[(f"pulp_content_{name}", ())]

            assert eventually(lambda: now("download_followers") == 3, timeout=30)
            assert now("downloads_in_flight") == 1
            assert [fetch.result() for fetch in fetches] == [200] * 3
        assert eventually(lambda: now("download_followers") == now("downloads_in_flight") == 0)
    assert scenario.remote.count("/fl/big.img") == 1


def test_a_scrape_while_a_worker_makes_its_file(scenario, tmp_path):
    """A worker makes its values' file, then sizes it: a scrape between the two saw an
    empty file and failed whole with a 500 (seen in CI, scraping during a download).
    Such a file holds no values yet: the scrape goes on without it."""
    with ServiceProcess(scenario.settings, workers=2, metrics_dir=tmp_path) as served:
        assert get(served.port, "/pulp/content/nowhere") == 404
        assert eventually(lambda: answered(scrape(served.port), "4xx") == 1)
        assert eventually(lambda: workers(scrape(served.port)) == 2)  # both booted
        (tmp_path / "counter_424242.db").touch()  # made, not yet sized
        (tmp_path / "histogram_424242.db").write_bytes(bytes(1 << 16))  # sized, not yet used
        for _ in range(4):  # either worker answers each
            scraped = scrape(served.port)
            assert answered(scraped, "4xx") == 1 and workers(scraped) == 2


def test_the_workers_own_directory_goes_with_them(scenario, monkeypatch):
    """Without PROMETHEUS_MULTIPROC_DIR the master makes a private one, gone at exit."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    before = set(Path(tempfile.gettempdir()).glob("pulp-content-metrics-*"))
    with ServiceProcess(scenario.settings, workers=2) as served:
        assert get(served.port, "/pulp/content/nowhere") == 404
        made = set(Path(tempfile.gettempdir()).glob("pulp-content-metrics-*")) - before
        assert len(made) == 1 and oct(next(iter(made)).stat().st_mode & 0o777) == "0o700"
        assert eventually(lambda: answered(scrape(served.port), "4xx") == 1)
    assert not next(iter(made)).exists()


def test_one_process_counts_too(scenario, monkeypatch):
    """`serve` without --workers: the same names, kept in memory."""
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    base = scenario.publish("one", [FILE], "immediate")
    with ServiceProcess(scenario.settings, workers=1) as served:
        for _ in range(5):
            assert get(served.port, base + FILE.relative_path) == 200
        assert eventually(lambda: answered(scrape(served.port)) == 5)
        scraped = scrape(served.port)
        assert scraped[("process_cpu_seconds_total", ())] > 0


def test_upstream_downloads_and_verification_are_counted(scenario, db):
    """A lazy file: one upstream request and its bytes by remote; a corrupt one: a
    verification failure (not an upstream failure); a 5xx: an upstream failure."""
    files = [FILE, FileSpec("bad.bin", 3000, 72), FileSpec("down.bin", 100, 73)]
    base = scenario.publish("up", files, "on_demand")
    scenario.remote.set_fault("up/bad.bin", Fault("wrong_bytes"))
    scenario.remote.set_fault("up/down.bin", Fault("status", status=500))
    server = ServiceServer(db)
    with Background(server):
        client = Client(server)

        def scraped() -> dict:
            return metric_samples(client.get("/metrics").body.decode())

        assert client.get(base + FILE.relative_path).status == 200
        assert not client.get(base + "bad.bin").complete
        assert client.get(base + FILE.relative_path).status == 200  # from storage now
        remote = (("remote", "up"),)
        stored = (DURATION + "_count", (("served_from", "storage"), ("status", "2xx")))
        verified = ("pulp_content_verification_failures_total", remote)
        # Counted as each download ends and each access log line is written.
        assert eventually(lambda: scraped().get(verified) == 1 and scraped().get(stored) == 1)
        values = scraped()
        assert client.get(base + "down.bin").status == 502
        failures = scraped()[("pulp_content_upstream_failures_total", remote)]
    assert values[("pulp_content_upstream_requests_total", remote)] == 2
    assert values[("pulp_content_upstream_received_bytes_total", remote)] == FILE.size + 3000
    assert ("pulp_content_upstream_failures_total", remote) not in values
    assert failures >= 1
    assert values[("pulp_content_downloads_in_flight", ())] == 0
    assert values[("pulp_content_download_followers", ())] == 0
    upstream = (("served_from", "upstream"), ("status", "2xx"))
    assert values[(DURATION + "_count", upstream)] == 2
    assert values[("pulp_content_resolution_cache_misses_total", ())] >= 1
