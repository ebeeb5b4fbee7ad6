"""The SQLite database file, as users meet it in fresh processes: only `migrate` creates
one (and `serve` on a brand-new home, so the first command of the README works); any
other command on a missing file says so and creates nothing."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from tests.helpers import run_command

pytestmark = pytest.mark.functional


def sqlite_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    return {**env, "PULP_CONTENT_HOME": str(home)}


@contextmanager
def serving(env: dict[str, str]) -> Iterator[int]:
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=60)
    assert "Traceback" not in output, output


def status(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code


def refused(env: dict[str, str], *args: str) -> str:
    done = run_command(*args, env=env)
    assert done.returncode == 1, (args, done.stdout, done.stderr)
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_serve_on_a_brand_new_home_creates_its_database(tmp_path):
    for home in (tmp_path / "not-yet", tmp_path / "empty"):
        if home.name == "empty":
            home.mkdir()
        env = sqlite_env(home)
        with serving(env) as port:
            assert status(port, "/health") == 200
        assert (home / "db.sqlite3").exists()
        listed = run_command("remote", "list", "--json", env=env)
        assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_other_commands_on_a_fresh_home_ask_for_migrate(tmp_path):
    home = tmp_path / "home"
    env = sqlite_env(home)
    for args in (("remote", "list"), ("remote", "create", "r", "--url", "http://x/PULP_MANIFEST")):
        assert refused(env, *args) == (
            f"Error: no database at {home / 'db.sqlite3'}: run `pulp-content migrate` to create it"
        )
    assert not home.exists()


def test_a_deleted_database_is_not_recreated_beside_the_service_still_using_it(tmp_path):
    home = tmp_path / "home"
    env = sqlite_env(home)
    database = home / "db.sqlite3"
    assert run_command("migrate", env=env).returncode == 0
    created = run_command("remote", "create", "kept", "--url", "http://x/PULP_MANIFEST", env=env)
    assert created.returncode == 0, created.stderr
    missing = f"Error: no database at {database}: run `pulp-content migrate` to create it"
    with serving(env) as port:
        assert status(port, "/pulp/content/") == 200
        database.unlink()
        # The service's own new connections do not create it either.
        assert status(port, "/pulp/content/") in (200, 500, 503)
        assert status(port, "/health") in (200, 503)
        for args in (
            ("remote", "list"),
            ("remote", "create", "new", "--url", "http://x/PULP_MANIFEST"),
            ("repository", "create", "new"),
            ("resolve", "/pulp/content/x"),
            ("serve", "--bind", f"127.0.0.1:{free_port()}"),  # the home is not new
        ):
            assert refused(env, *args) == missing, args
            assert not database.exists(), args
        # Nor does migrate while the old database's write-ahead log is in use.
        assert "db.sqlite3-wal is there without its database" in refused(env, "migrate")
        assert not database.exists()
