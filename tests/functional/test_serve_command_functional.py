"""`pulp-content serve` as a user runs it: a real process, its own database connection."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from fixtures.remote import FileSpec
from tests.helpers import eventually

pytestmark = pytest.mark.functional


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_serve_command_streams_lazy_content_once(scenario):
    files = [FileSpec("x/y.iso", 200_000, 5)]
    base = scenario.publish("served", files, "on_demand")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "pulp_content_cli", "serve", "--bind", f"127.0.0.1:{port}"],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert eventually(lambda: listening(port) or process.poll() is not None, timeout=30)
        assert process.poll() is None, process.stdout.read() if process.stdout else ""
        url = f"http://127.0.0.1:{port}{base}x/y.iso"
        for _ in range(3):
            with urllib.request.urlopen(url, timeout=30) as response:
                assert response.status == 200
                assert response.read() == files[0].content()
        assert scenario.remote.count("/served/x/y.iso") == 1
    finally:
        process.terminate()
        output = process.communicate(timeout=30)[0]
    assert f"serving http://127.0.0.1:{port}/pulp/content/" in output
    assert "Traceback" not in output


def test_serve_with_two_workers_shares_one_download(scenario):
    """`serve --workers 2`: two processes on one port; twenty clients of one uncached
    artifact still make one upstream download."""
    import re
    from concurrent.futures import ThreadPoolExecutor

    from fixtures.remote import Fault

    big = FileSpec("big.img", 2 * 1024 * 1024, 6)
    base = scenario.publish("workers", [big], "on_demand")
    scenario.remote.set_fault("workers", Fault("bandwidth", bytes_per_second=4 * 1024 * 1024))
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pulp_content_cli",
            "serve",
            "--workers",
            "2",
            "--bind",
            f"127.0.0.1:{port}",
        ],
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )

    def fetch(path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as r:
            return r.read()

    try:
        assert eventually(lambda: listening(port) or process.poll() is not None, timeout=30)
        assert process.poll() is None
        with ThreadPoolExecutor(20) as pool:
            bodies = list(pool.map(lambda _: fetch(base + "big.img"), range(20)))
        assert all(body == big.content() for body in bodies)
        assert scenario.remote.count("/workers/big.img") == 1
        # Two worker processes under the one gunicorn master, each answering /metrics.
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        assert len(children) == 2
        assert re.search(r'pid="\d+"', fetch("/metrics").decode())
    finally:
        process.terminate()
        output = process.communicate(timeout=60)[0]
    assert "Traceback" not in output, output
    # Each worker writes the access log: one line per request.
    assert output.count(f'"GET {base}big.img" 200') == 20, output
