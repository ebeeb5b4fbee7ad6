"""The CLI as Pulp users know it: help on every command and option, `--json` on every
create, update, show and list (the object it made or shows), URLs on the configured
origin and prefix, shell completion, and a fixture remote on the same port every run.
Commands run as fresh `pulp-content` processes, as users run them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from pulp_content.cli.fixture import DEFAULT_BIND as FIXTURE_BIND
from pulp_content.fixtures.bench import CLI
from pulp_content.fixtures.remote import FileSpec
from tests.helpers import need_tool, run_command
from tests.test_cli_fresh_process import PYTHON_REPR, commands

FILES = [FileSpec("a.bin", 1000, 61), FileSpec("dir/b.bin", 10, 62)]
ORIGIN = "https://content.example.com"
PREFIX = "/content/"
JSON_COMMANDS = {"create", "update", "show", "list"}


def test_every_command_and_option_has_help():
    missing = []
    for path, command in commands():
        name = " ".join(("pulp-content", *path))
        if not (command.help or command.short_help):
            missing.append(name)
        missing += [
            f"{name} {param.opts[0]}"
            for param in command.params
            if isinstance(param, click.Option) and not param.help
        ]
    assert missing == []


def test_every_create_update_show_and_list_has_json():
    missing = [
        " ".join(path)
        for path, command in commands()
        if path
        and path[-1] in JSON_COMMANDS
        and not any("--json" in param.opts for param in command.params)
    ]
    assert missing == []


class User:
    """`pulp-content` in fresh processes with the test database, under ORIGIN and PREFIX."""

    def __init__(self, **env: str) -> None:
        self.env = {
            **os.environ,
            "PULP_CONTENT_CONTENT_ORIGIN": ORIGIN,
            "PULP_CONTENT_CONTENT_PATH_PREFIX": PREFIX,
            **env,
        }

    def run(self, *args: str) -> str:
        done = run_command(*args, env=self.env)
        assert (done.returncode, done.stderr) == (0, ""), (args, done.stdout, done.stderr)
        if "--json" not in args:
            assert not PYTHON_REPR.search(done.stdout), (args, done.stdout)
        return done.stdout

    def doc(self, *args: str) -> Any:
        return json.loads(self.run(*args, "--json"))


def test_json_prints_the_object_and_urls_are_on_the_origin(upstream, db):
    user = User()
    url = upstream.add_repository("files", FILES)
    remote = user.doc("remote", "create", "up", "--url", url, "--policy", "on_demand")
    assert (remote["name"], remote["url"], remote["policy"]) == ("up", url, "on_demand")
    assert user.doc("remote", "update", "up", "--max-size", "1M")["max_size"] == 1024**2
    repository = user.doc("repository", "create", "files", "--remote", "up")
    assert repository == {"name": "files", "remote": "up", "latest_version": 0}
    user.run("repository", "sync", "files")
    publication = user.doc("publication", "create", "--repository", "files")
    assert publication == {
        "id": publication["id"],
        "repository": "files",
        "version": 1,
        "pass_through": False,
    }
    assert isinstance(publication["id"], int)
    assert user.doc("publication", "list") == [publication]
    made = user.run(
        "distribution", "create", "files", "--base-path", "f/x", "--repository", "files"
    )
    assert made == f"created distribution files at {ORIGIN}{PREFIX}f/x/\n"
    # resolve says what the service sends: the redirect absolute on the origin.
    assert f"\nlocation: {ORIGIN}{PREFIX}f/x/\n" in user.run("resolve", f"{PREFIX}f/x")
    guard = user.doc("guard", "create", "signed", "--kind", "signed-url")
    assert (guard["name"], guard["key"], guard["distributions"]) == ("signed", "***", [])
    dist = user.doc("distribution", "update", "files", "--guard", "signed")
    assert dist == {
        "name": "files",
        "base_path": "f/x",
        "url": f"{ORIGIN}{PREFIX}f/x/",
        "repository": "files",
        "guard": "signed",
    }
    for kind, name in [("remote", "up"), ("repository", "files"), ("distribution", "files")]:
        assert user.doc(kind, "list") == [user.doc(kind, "show", name)]
    assert f"url: {ORIGIN}{PREFIX}f/x/\n" in user.run("distribution", "show", "files")


def test_sign_takes_a_path_on_the_origin_under_the_prefix(scenario, db):
    user = User()
    scenario.publish("pub", FILES, "on_demand", base_path="f/x")
    user.run("guard", "create", "signed", "--kind", "signed-url")
    user.run("distribution", "update", "pub", "--guard", "signed")
    signed = user.run("sign", f"{PREFIX}f/x/a.bin").strip()
    assert signed.startswith(f"{ORIGIN}{PREFIX}f/x/a.bin?expires=")
    # The service would let it in: resolve runs the same guard.
    path = signed.removeprefix(ORIGIN)
    assert "action: stream\n" in user.run("resolve", path)
    assert "action: forbidden\n" in user.run("resolve", f"{PREFIX}f/x/a.bin")


def test_lists_have_a_header_row_even_when_empty(db):
    user = User()
    headers = {
        "remote": "NAME  POLICY  URL",
        "repository": "NAME  LATEST VERSION  REMOTE",
        "publication": "ID  REPOSITORY  VERSION  PASS THROUGH",
        "distribution": "NAME  BASE PATH  URL",
        "guard": "NAME  KIND  DISTRIBUTIONS",
    }
    for kind, header in headers.items():
        assert user.run(kind, "list") == header + "\n"
        assert user.doc(kind, "list") == []


def fresh_env(tmp_path: Path) -> dict[str, str]:
    """A user's environment on a home that does not exist yet, with the console script."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    env["PULP_CONTENT_HOME"] = str(tmp_path / "home")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


# What README.md tells users to put in ~/.bashrc, then a TAB after the words given.
COMPLETE = """
eval "$(_PULP_CONTENT_COMPLETE=bash_source pulp-content)"
COMP_WORDS=($WORDS); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
_pulp_content_completion pulp-content
printf '%s\\n' "${COMPREPLY[@]}"
"""


@pytest.mark.parametrize(
    ("words", "offered"),
    [
        ("pulp-content dist", ["distribution"]),
        ("pulp-content distribution cr", ["create"]),
        ("pulp-content serve --des", ["--design"]),
        ("pulp-content serve --design ''", ["merged", "redirect"]),
        ("pulp-content remote create x --pol", ["--policy"]),
    ],
)
def test_bash_completion_in_a_fresh_process(tmp_path, words, offered):
    bash = need_tool("bash")
    env = {**fresh_env(tmp_path), "WORDS": words}
    done = subprocess.run(
        [bash, "-c", COMPLETE], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert (done.returncode, done.stderr) == (0, ""), done
    assert done.stdout.split() == offered
    assert not (tmp_path / "home").exists()  # completing touches no database


def test_fixture_serve_keeps_the_same_port_by_default(tmp_path):
    host, port = FIXTURE_BIND.split(":")
    holder = socket.socket()
    try:
        holder.bind((host, int(port)))
    except OSError:
        holder.close()
        pytest.skip(f"{FIXTURE_BIND} is in use on this machine")
    with holder:
        holder.listen()
        taken = run_command("fixture", "serve", env=fresh_env(tmp_path))
    assert (taken.returncode, taken.stdout) == (1, "")
    assert taken.stderr.splitlines() == [
        f"Error: cannot listen on {FIXTURE_BIND}: address already in use "
        "(--bind HOST:PORT to use another)"
    ]
    process = subprocess.Popen(
        [*CLI, "fixture", "serve"],
        env=fresh_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
    finally:
        process.terminate()
        process.communicate(timeout=60)
    assert first.startswith(f"fixture remote on http://{FIXTURE_BIND} "), first
