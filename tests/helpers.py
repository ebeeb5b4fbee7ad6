"""Small helpers the tests share."""

from __future__ import annotations

import http.client
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def http_status(port: int, path: str, timeout: float = 30) -> int:
    """The status of a plain GET of `path` on 127.0.0.1:`port` (the body is read)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pulp-content ARGS` in a fresh process, with exactly `env` (Django in the test
    process is set up for the test database; this one sets itself up from `env`)."""
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def curl_binary() -> str:
    """curl's path; a missing curl fails the test in CI (.ci/run installs it), else skips."""
    return need_tool("curl")


@dataclass
class CurlReply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def curl(url: str, *options: str) -> CurlReply:
    """One request with curl as a user runs it (the path sent as given, no redirects)."""
    with tempfile.TemporaryDirectory() as tmp:
        head, body = Path(tmp) / "head", Path(tmp) / "body"
        done = subprocess.run(
            [curl_binary(), "-sS", "--path-as-is", "-D", str(head), "-o", str(body), *options, url],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        lines = head.read_text(errors="replace").splitlines()
        status = int(lines[0].split()[1])
        headers = {
            name.strip().lower(): value.strip()
            for name, sep, value in (line.partition(":") for line in lines[1:])
            if sep
        }
        return CurlReply(status, headers, body.read_bytes())


def need_tool(name: str) -> str:
    """The path of a command-line tool the test drives; without it the test skips, or
    fails when CI is set (CI installs it: see .ci/run)."""

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def metric_samples(text: str) -> Samples:
    """Every sample of a /metrics page, by name and sorted labels (prometheus_client's
    own parser reads it, as a scrape would)."""
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def per_process(directory: Path) -> dict[int, Samples]:
    """What each process of a multiprocess service counted: its own files in the metrics
    directory (what a scrape adds up), read with prometheus_client, one pid at a time."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.multiprocess import MultiProcessCollector

    pids = {int(path.stem.rsplit("_", 1)[1]) for path in directory.glob("*_*.db")}
    found = {}
    for pid in pids:
        with tempfile.TemporaryDirectory() as alone:
            for path in directory.glob(f"*_{pid}.db"):
                shutil.copy(path, alone)
            registry = CollectorRegistry()
            MultiProcessCollector(registry, alone)
            found[pid] = metric_samples(generate_latest(registry).decode())
    return found
