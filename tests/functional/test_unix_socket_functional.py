"""`pulp-content serve --bind unix:PATH`, one worker and gunicorn's, as fresh processes
driven with `curl --unix-socket`; paths it cannot listen on are one `Error:` line."""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI
from pulp_content.fixtures.remote import FileSpec
from tests.helpers import curl, eventually, run_command

pytestmark = pytest.mark.functional

STORED = FileSpec("dir/stored.bin", 120_000, 91)
LAZY = FileSpec("lazy.bin", 90_000, 92)


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short directory for sockets (a unix socket's path has 107 bytes at most)."""
    with tempfile.TemporaryDirectory(prefix="pc-", dir="/tmp") as tmp:
        yield Path(tmp)


def over_unix(path: Path, url_path: str) -> tuple[int, bytes]:
    reply = curl(f"http://localhost{url_path}", "--unix-socket", str(path))
    return reply.status, reply.body


def answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX) as sock:
        return sock.connect_ex(str(path)) == 0


@pytest.mark.parametrize("workers", [1, 2])
def test_serve_on_a_unix_socket(scenario, socket_dir, workers):
    scenario.publish("eager", [STORED], "immediate")
    scenario.publish("lazy", [LAZY], "on_demand")
    path = socket_dir / "content.sock"
    bind = f"unix:{path}"
    with tempfile.TemporaryFile() as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--workers", str(workers), "--bind", bind],
            env=dict(os.environ),
            stdout=out,
            stderr=subprocess.STDOUT,
            umask=0o007,
        )
        try:
            assert eventually(lambda: answers(path) or process.poll() is not None, timeout=60)
            assert process.poll() is None
            # The socket's mode is what the umask leaves: the group (nginx's) may connect.
            assert stat.S_IMODE(path.stat().st_mode) == 0o770
            assert over_unix(path, "/livez") == (200, b'{"status": "ok"}')
            status, body = over_unix(path, "/readyz")
            assert status == 200 and json.loads(body)["database"] == "ok"
            assert over_unix(path, "/pulp/content/eager/dir/stored.bin") == (200, STORED.content())
            assert over_unix(path, "/pulp/content/lazy/lazy.bin") == (200, LAZY.content())
            assert scenario.remote.count("/lazy/lazy.bin") == 1
        finally:
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=60)
        out.seek(0)
        output = out.read().decode(errors="replace")
    assert code == 0, output
    assert f"serving /pulp/content/ on {bind}" in output
    assert "Traceback" not in output
    assert not path.exists()  # removed on the way out, by either server


def test_a_stale_socket_file_is_replaced(scenario, socket_dir):
    """A socket file nobody listens on (a killed server's) is no obstacle."""
    path = socket_dir / "stale.sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))  # bound, never listening: connecting is refused
    process = subprocess.Popen(
        [*CLI, "serve", "--bind", f"unix:{path}"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert eventually(lambda: answers(path) or process.poll() is not None, timeout=60)
        assert over_unix(path, "/livez")[0] == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0


def refusal(*args: str) -> str:
    done = run_command("serve", *args, env=dict(os.environ))
    assert done.returncode in (1, 2), done
    assert "Traceback" not in done.stderr and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert lines[-1].startswith("Error: "), done.stderr
    return lines[-1]


def test_unusable_paths_are_one_error_line(db, socket_dir):
    listening = socket.socket(socket.AF_UNIX)
    listening.bind(str(socket_dir / "busy.sock"))
    listening.listen()
    (socket_dir / "file").write_text("not a socket")
    long_path = socket_dir / ("x" * 120)
    cases = {
        f"unix:{socket_dir}/missing/s.sock": "no such file or directory",
        f"unix:{long_path}": "the path is longer than a unix socket's 107 bytes",
        f"unix:{socket_dir}/file": "it exists and is not a socket",
        f"unix:{socket_dir}/busy.sock": "a server listens there",
    }
    try:
        for bind, reason in cases.items():
            assert refusal("--bind", bind) == f"Error: cannot listen on {bind}: {reason}"
            assert refusal("--workers", "2", "--bind", bind).endswith(reason)
    finally:
        listening.close()
    assert (socket_dir / "file").read_text() == "not a socket"  # left as it was
    line = refusal("--bind", "unix:")
    assert line == "Error: Invalid value for --bind: expected unix:PATH, got 'unix:'"
    line = refusal("--bind", f"unix:{socket_dir}/r.sock", "--design", "redirect")
    assert line == "Error: Invalid value for --bind: unix:PATH serves the merged design only"
