"""Bad input as a user types it, each in a fresh `pulp-content` process: one `Error: ...`
line, exit 1 (2 for a usage error), no traceback, the database and storage unchanged."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import free_port
from pulp_content.fixtures.remote import FileSpec
from tests.helpers import run_command
from tests.test_cli import snapshot

FILES = [FileSpec("a.iso", 2048, 1)]
BAD = os.fsdecode(b"\xff")  # a byte that is not UTF-8, as the command line delivers it


@dataclass(frozen=True)
class Case:
    args: tuple[str, ...]
    message: str  # in the Error line
    status: int = 1
    env: dict[str, str] = field(default_factory=dict)
    secret: str = "\x00"  # must not appear in the output


@pytest.fixture
def world(scenario):
    """A remote, a synced repository, a publication and its distribution at a/b."""
    scenario.publish("pub", FILES, "on_demand", base_path="a/b")
    return scenario


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def files(tmp_path: Path) -> Path:
    """Files a user might hand over by mistake."""
    (tmp_path / "binary.pem").write_bytes(bytes(range(256)) * 4)
    (tmp_path / "text.pem").write_text("not a certificate\n")
    (tmp_path / "latin1.toml").write_bytes(b'home = "/tmp/h\xe9"\n')
    (tmp_path / "nul.toml").write_text('home = "/tmp/a\\u0000b"\n')
    (tmp_path / "a-file").write_text("")
    (tmp_path / "origin.toml").write_text('content_origin = "https://h.example.com/pulp"\n')
    return tmp_path


def cases(port: int, files: Path) -> list[Case]:
    new = ("remote", "create", "new", "--url", "http://x/PULP_MANIFEST")
    busy = f"127.0.0.1:{port}"
    in_use = f"cannot listen on {busy}: address already in use"
    return [
        Case(("serve", "--bind", busy), in_use),
        Case(("serve", "--workers", "2", "--bind", busy), in_use),
        Case(("serve", "--design", "redirect", "--bind", busy), in_use),
        Case(("fixture", "serve", "--bind", busy), in_use),
        Case(("serve", "--bind", "no-such-host.invalid:8080"), "cannot listen on no-such-host"),
        Case(("remote", "create", "new", "--url", "http://[::1/y"), "Invalid IPv6 URL"),
        Case(("remote", "update", "pub", "--url", "http://[::1/y"), "Invalid IPv6 URL"),
        Case(("remote", "update", "pub", "--proxy-url", "http://[::1"), "Invalid IPv6 URL"),
        Case(("sign", "http://[::1/pulp/content/a/b/a.iso"), "Invalid IPv6 URL"),
        Case((*new, "--ca-cert", str(files / "binary.pem")), "is not PEM text", 2),
        Case((*new, "--ca-cert", str(files / "text.pem")), "CA certificate is not PEM", 1),
        Case((*new, "--client-cert", str(files / "text.pem")), "client certificate and key"),
        Case((*new, "--client-key", str(files / "binary.pem")), "is not PEM text", 2),
        Case(
            ("guard", "create", "g", "--kind", "x509", "--ca-cert", str(files / "binary.pem")),
            "is not PEM text",
            2,
        ),
        Case(("remote", "create", f"n{BAD}", "--url", "http://x/"), "is not valid UTF-8"),
        Case(
            (
                "guard",
                "create",
                "g",
                "--kind",
                "header",
                "--header",
                "X",
                "--value",
                f"s3cr3t{BAD}",
            ),
            "a --value is not valid UTF-8",
            secret="s3cr3t",
        ),
        Case(("guard", "create", "g", "--kind", "basic", "--user", f"u{BAD}:pw"), "is not valid"),
        Case(
            ("guard", "create", "g", "--kind", "signed-url", "--key", "s3cr3t\n"),
            "--key contains a control character",
            secret="s3cr3t",
        ),
        Case(("remote", "show", f"n{BAD}"), "is not valid UTF-8"),
        Case(("repository", "create", f"r{BAD}"), "is not valid UTF-8"),
        Case(("remote", "create", "new", "--url", f"http://x/{BAD}"), "is not valid UTF-8"),
        Case((*new, "--username", f"u{BAD}"), "is not valid UTF-8"),
        Case((*new, "--header", f"X-A: {BAD}"), "is not valid UTF-8"),
        Case(
            ("distribution", "create", "d", "--base-path", f"x{BAD}", "--repository", "pub"),
            "is not valid UTF-8",
        ),
        Case(("distribution", "update", "pub", "--base-path", f"x{BAD}"), "is not valid UTF-8"),
        Case(
            ("distribution", "create", "d", "--base-path", "x", "--version", f"p{BAD}:1"),
            "is not valid UTF-8",
        ),
        Case(("sign", f"http://h/pulp/content/a/b/{BAD}"), "is not valid UTF-8"),
        Case(("--config", str(files / "latin1.toml"), "remote", "list"), "is not UTF-8 text"),
        Case(("--config", str(files / "nul.toml"), "remote", "list"), "control character"),
        Case(
            ("remote", "list"),
            "cannot use /proc/nope as PULP_CONTENT_HOME",
            env={"PULP_CONTENT_HOME": "/proc/nope"},
        ),
        Case(
            ("migrate",),
            "cannot use /proc/nope as PULP_CONTENT_HOME",
            env={"PULP_CONTENT_HOME": "/proc/nope"},
        ),
        Case(
            ("remote", "list"), "not a directory", env={"PULP_CONTENT_HOME": str(files / "a-file")}
        ),
        Case((*new, "--total-timeout", "inf"), "positive number of seconds", 2),
        Case((*new, "--connect-timeout", "nan"), "positive number of seconds", 2),
        Case((*new, "--sock-read-timeout", "-1"), "positive number of seconds", 2),
        Case((*new, "--download-concurrency", "99999999999"), "--download-concurrency", 2),
        Case(("remote", "create", "new", "--url", "http://x/\nPULP_MANIFEST"), "control character"),
        Case(("remote", "update", "pub", "--url", "http://x/\tM"), "control character"),
        Case((*new, "--header", "X-A: s3cr3t\r\nEvil: c"), "control character", secret="s3cr3t"),
        Case((*new, "--password", "s3cr3t\nq"), "the password contains a control", secret="s3cr3t"),
        Case(("remote", "create", "n", "--url", "ftp://u:s3cr3t@x/"), "u:***@x", secret="s3cr3t"),
        Case(
            ("distribution", "create", "d", "--base-path", "x", "--publication", "9" * 30),
            "--publication",
            2,
        ),
        Case(
            ("distribution", "create", "d", "--base-path", "x", "--repository", "pub"),
            "PULP_CONTENT_CONTENT_ORIGIN must be scheme://host[:port]",
            env={"PULP_CONTENT_CONTENT_ORIGIN": "h.example.com"},
        ),
        Case(
            ("--config", str(files / "origin.toml"), "distribution", "show", "pub"),
            "with no path (the path is PULP_CONTENT_CONTENT_PATH_PREFIX)",
        ),
        Case(
            ("distribution", "update", "pub", "--base-path", "y"),
            "PULP_CONTENT_CONTENT_PATH_PREFIX must start and end with '/'",
            env={"PULP_CONTENT_CONTENT_PATH_PREFIX": "/content"},
        ),
        Case(
            ("serve", "--bind", f"127.0.0.1:{free_port()}"),
            "PULP_CONTENT_CONTENT_PATH_PREFIX must not begin with /livez",
            env={"PULP_CONTENT_CONTENT_PATH_PREFIX": "/livez/"},
        ),
        Case(
            ("serve", "--design", "redirect", "--bind", f"127.0.0.1:{free_port()}"),
            "PULP_CONTENT_CONTENT_PATH_PREFIX must start and end with '/' and hold at least one",
            env={"PULP_CONTENT_CONTENT_PATH_PREFIX": "/"},
        ),
        Case(
            ("sign", "http://h/pulp/content/a/b/a.iso"),
            "is not under /c/",
            env={"PULP_CONTENT_CONTENT_PATH_PREFIX": "/c/"},
        ),
    ]


def test_bad_input_in_a_fresh_process_is_one_line(world, busy_port, files):
    """Each case, as its own process, side by side; nothing any of them did shows."""
    env = dict(os.environ)  # the test database: `db` set PULP_CONTENT_HOME and _DATABASE_URL
    todo = cases(busy_port, files)
    before = snapshot(world.settings)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda c: run_command(*c.args, env={**env, **c.env}), todo))
    for case, done in zip(todo, results, strict=True):
        where = (case.args, done.stdout, done.stderr)
        assert done.returncode == case.status, where
        assert "Traceback" not in done.stderr, where
        assert done.stdout == "", where
        assert case.secret not in done.stderr, where
        errors = [line for line in done.stderr.splitlines() if line.startswith("Error: ")]
        assert len(errors) == 1 and case.message in errors[0], where
        if case.status == 1:
            assert done.stderr.splitlines() == errors, where
    assert snapshot(world.settings) == before
