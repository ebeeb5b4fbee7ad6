"""Small helpers the tests share."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

from pulp_content.fixtures.bench import CLI


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Poll `predicate` until it holds or `timeout` seconds pass; returns its last value."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run_command(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`pulp-content ARGS` in a fresh process, with exactly `env` (Django in the test
    process is set up for the test database; this one sets itself up from `env`)."""
    return subprocess.run(
        [*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def need_tool(name: str) -> str:
    """The path of a command-line tool the test drives; without it the test skips, or
    fails when CI is set (CI installs it: see .ci/run)."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: see .ci/run)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path
