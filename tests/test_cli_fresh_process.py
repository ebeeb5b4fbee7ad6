"""Every command and subcommand as a user runs it: a fresh `pulp-content` process on a
fresh home (and, on PostgreSQL, a fresh database), never the test process's Django.

The commands are found by walking the click tree, so a new command cannot be missed:
each answers `--help` and `-h`, and the table of real invocations must cover every
leaf command.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import click
import pytest

import pulp_content.service.migrations
from pulp_content.cli.main import cli
from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from tests.helpers import run_command

CommandPath = tuple[str, ...]
# What plain output never shows: Python's spelling of nothing, truth, or empty containers.
PYTHON_REPR = re.compile(r"\b(None|True|False)\b|\{\}|\[\]|\(\)|\{'")

MIGRATIONS = len(list(Path(pulp_content.service.migrations.__file__).parent.glob("0*.py")))


def commands(
    command: click.Command = cli, path: CommandPath = ()
) -> Iterator[tuple[CommandPath, click.Command]]:
    """The root, every group and every command below it (hidden ones too)."""
    yield path, command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from commands(sub, (*path, name))


COMMAND_PATHS = [path for path, _ in commands()]
LEAF_COMMANDS = {path for path, command in commands() if not isinstance(command, click.Group)}


def leaf_of(args: tuple[str, ...]) -> CommandPath:
    """The command that `args` invokes (the longest prefix that names a command)."""
    command: click.Command = cli
    path: CommandPath = ()
    for arg in args:
        if not isinstance(command, click.Group) or arg not in command.commands:
            break
        command, path = command.commands[arg], (*path, arg)
    return path


@dataclass(frozen=True)
class Step:
    """One real invocation. `{name}` in args is filled from what earlier steps kept."""

    args: tuple[str, ...]
    expect: str = ""  # in stdout, or in the body a server answered
    keep: str | None = None  # remember stdout's last word under this name
    get: str | None = None  # a server: GET this path once it listens, then SIGTERM it
    background: str | None = None  # a server for the steps after it: keep the line with this
    match: str | None = None  # a regular expression stdout must match (re.search)


# Each chain runs in order; the chains run side by side.
CHAINS: list[list[Step]] = [
    [
        Step(
            ("fixture", "serve", "--bind", "127.0.0.1:{port}", "--repository", "files:3:2000"),
            background="PULP_MANIFEST",
        ),
        Step(("migrate",), f"applied {MIGRATIONS} migrations"),
        Step(("remote", "create", "up", "--url", "{server}", "--policy", "on_demand"), "created"),
        Step(("remote", "update", "up", "--sock-read-timeout", "30"), "updated remote up"),
        Step(("remote", "show", "up", "--json"), '"sock_read_timeout": 30.0'),
        Step(("remote", "list"), match=r"\ANAME +POLICY +URL\nup +on_demand +http://"),
        Step(("repository", "create", "files", "--remote", "up"), "created repository files"),
        Step(("repository", "sync", "files"), "synced files: version 1"),
        Step(("repository", "list"), match=r"\ANAME +LATEST VERSION +REMOTE\nfiles +1 +up\n"),
        Step(("repository", "show", "files"), "latest_version: 1"),
        Step(("publication", "create", "--repository", "files"), keep="publication"),
        Step(
            ("publication", "list"),
            match=r"\AID +REPOSITORY +VERSION +PASS THROUGH\n\d+ +files +1 +no\n",
        ),
        Step(
            (
                "distribution",
                "create",
                "files",
                "--base-path",
                "files",
                "--publication",
                "{publication}",
            ),
            "created distribution files at http://127.0.0.1:24816/pulp/content/files/",
        ),
        Step(("resolve", "/pulp/content/files/files-0.bin"), "action: stream"),
        Step(("serve", "--bind", "127.0.0.1:{port}"), get="/pulp/content/files/files-0.bin"),
        Step(
            ("legacy-streamer", "--bind", "127.0.0.1:{port}"),
            get="/streamer/files/files-1.bin",
        ),
        Step(("guard", "create", "signed", "--kind", "signed-url"), "created signed-url guard"),
        Step(("guard", "list"), match=r"\ANAME +KIND +DISTRIBUTIONS\nsigned +signed-url +-\n"),
        Step(("guard", "show", "signed"), "kind: signed-url"),
        Step(("distribution", "update", "files", "--guard", "signed"), "updated distribution"),
        Step(("distribution", "show", "files"), "guard: signed"),
        Step(
            ("distribution", "list"),
            match=r"\ANAME +BASE PATH +URL\nfiles +files +http://127.0.0.1:24816/pulp/content/files/\n",
        ),
        Step(("sign", "http://127.0.0.1/pulp/content/files/files-0.bin"), "&signature="),
        Step(("distribution", "delete", "files"), "deleted distribution files"),
        Step(("guard", "delete", "signed"), "deleted guard signed"),
        Step(("secrets", "rotate"), "re-encrypted 1 rows under a new key"),
        Step(("reclaim", "--json"), '"dry_run": false'),
        Step(("storage", "check", "--json"), "[]"),
        Step(("storage", "copy", "--to", "file://{home}/copied", "--json"), '"problems": []'),
        Step(("repository", "delete", "files"), "deleted repository files"),
        Step(("remote", "delete", "up"), "deleted remote up"),
    ],
    [
        Step(
            ("bench", "--design", "merged", "--requests", "1", "--size", "1", "--concurrency", "1"),
            "on_demand_first_fetch",
        )
    ],
]


def test_the_table_covers_every_command():
    covered = {leaf_of(step.args) for chain in CHAINS for step in chain}
    assert covered == LEAF_COMMANDS


@pytest.fixture
def fresh(settings, tmp_path) -> Iterator[tuple[dict[str, str], Callable[[], int]]]:
    """The environment of a user on a fresh home: on PostgreSQL, with a new, empty
    database; and a function counting the tables in the database (0 before `migrate`)."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    env["PULP_CONTENT_HOME"] = str(home)
    if settings.is_sqlite:
        yield env, lambda: sqlite_tables(home / "db.sqlite3")
        return
    from tests.conftest import throwaway_postgres

    with throwaway_postgres("pulp_content_fresh") as url:
        yield {**env, "PULP_CONTENT_DATABASE_URL": url}, lambda: postgres_tables(url)


def sqlite_tables(path: Path) -> int:
    import sqlite3

    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM sqlite_master WHERE type='table'").fetchone()[0]


def postgres_tables(url: str) -> int:
    import psycopg2

    from pulp_content.service.config import connect_params

    with psycopg2.connect(**connect_params(url)) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema='public'")
        count: int = cur.fetchone()[0]
    conn.close()
    return count


def test_every_command_answers_help_and_h_without_touching_anything(fresh):
    env, tables = fresh
    jobs = [(*path, flag) for path in COMMAND_PATHS for flag in ("--help", "-h")]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda args: run_command(*args, env=env), jobs))
    for args, done in zip(jobs, results, strict=True):
        assert done.returncode == 0, (args, done.stderr)
        assert done.stderr == "", (args, done.stderr)
        usage = done.stdout.splitlines()[0]
        assert re.fullmatch(rf"Usage: .*\b{' '.join(args[:-1])} ?\[OPTIONS\].*", usage), args
    assert not Path(env["PULP_CONTENT_HOME"]).exists()
    assert tables() == 0


# Dozens of fresh interpreters, each importing Django and the service: on a loaded
# two-core machine the chains took over the default 120 s once (a CI run beside others).
@pytest.mark.timeout(360)
def test_every_command_runs_in_a_fresh_process(fresh):
    env, _ = fresh
    with ThreadPoolExecutor(len(CHAINS)) as pool:
        for outcome in pool.map(lambda chain: run_chain(chain, env), CHAINS):
            assert outcome is None


def run_chain(chain: list[Step], env: dict[str, str]) -> None:
    kept: dict[str, str] = {"home": env["PULP_CONTENT_HOME"]}
    servers: list[subprocess.Popen[str]] = []
    try:
        for step in chain:
            port = free_port()
            args = tuple(arg.format(port=port, **kept) for arg in step.args)
            if step.background:
                servers.append(start_background(args, env, step.background, kept))
            elif step.get:
                assert step.get.format(**kept) and serve_once(args, env, port, step.get)
            else:
                done = run_command(*args, env=env)
                assert done.returncode == 0, (args, done.stdout, done.stderr)
                assert "Traceback" not in done.stderr, (args, done.stderr)
                assert step.expect.format(**kept) in done.stdout, (args, done.stdout)
                assert not step.match or re.search(step.match, done.stdout), (args, done.stdout)
                if "--json" not in args:
                    assert not PYTHON_REPR.search(done.stdout), (args, done.stdout)
                if step.keep:
                    kept[step.keep] = done.stdout.split()[-1]
    finally:
        for server in servers:
            stop(server)


def start_background(
    args: tuple[str, ...], env: dict[str, str], marker: str, kept: dict[str, str]
) -> subprocess.Popen[str]:
    """Start a server; keep the first line of its output holding `marker` as `server`."""
    process = subprocess.Popen(
        [*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert process.stdout is not None
    for line in process.stdout:
        if marker in line:
            kept["server"] = line.strip()
            return process
    raise AssertionError(f"{args} exited with {process.wait()} before printing {marker}")


def serve_once(args: tuple[str, ...], env: dict[str, str], port: int, path: str) -> bool:
    """Start a server, GET `path` (200 and a body), stop it; it exits 0, no traceback."""
    process = subprocess.Popen(
        [*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_listening(port, process)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60) as response:
            assert response.status == 200
            assert len(response.read()) == 2000
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert "Traceback" not in output, output
    return True


def stop(process: subprocess.Popen[str]) -> str:
    """SIGTERM, wait; returns what it printed."""
    process.send_signal(signal.SIGTERM)
    try:
        output, _ = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    return output or ""
