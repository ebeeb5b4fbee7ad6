"""`pulp-content serve` as a user runs it: a real process, its own database connection."""

from __future__ import annotations

import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from tests.functional.conftest import ServiceProcess
from tests.helpers import eventually

pytestmark = pytest.mark.functional


def fetch(port: int, path: str) -> bytes:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
        assert response.status == 200
        return response.read()


def test_serve_command_streams_lazy_content_once(scenario):
    files = [FileSpec("x/y.iso", 200_000, 5)]
    base = scenario.publish("served", files, "on_demand")
    with ServiceProcess(scenario.settings, workers=1) as served:
        for _ in range(3):
            assert fetch(served.port, f"{base}x/y.iso") == files[0].content()
        assert scenario.remote.count("/served/x/y.iso") == 1
        assert f"serving http://127.0.0.1:{served.port}/pulp/content/" in served.output()
    # ServiceProcess fails the test on a traceback in the output.


def test_serve_with_two_workers_shares_one_download(scenario):
    """`serve --workers 2`: two processes on one port; twenty clients of one uncached
    artifact still make one upstream download."""
    big = FileSpec("big.img", 2 * 1024 * 1024, 6)
    base = scenario.publish("workers", [big], "on_demand")
    scenario.remote.set_fault("workers", Fault("bandwidth", bytes_per_second=4 * 1024 * 1024))
    with ServiceProcess(scenario.settings, workers=2) as served:
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(lambda _: fetch(served.port, base + "big.img"), range(20)))
        assert all(body == big.content() for body in bodies)
        assert scenario.remote.count("/workers/big.img") == 1
        # Two worker processes under the one gunicorn master, either answering /metrics
        # for both (test_metrics_functional), and writing the access log: one line per
        # request.
        assert len(served.worker_pids()) == 2
        both = b"pulp_content_worker_processes 2.0"
        assert eventually(lambda: both in fetch(served.port, "/metrics"))
        line = f'"GET {base}big.img HTTP/1.1" 200'
        assert eventually(lambda: served.output().count(line) == 20), served.output()
