"""The shipped systemd unit: `systemd-analyze verify` finds nothing wrong with it, and its
ExecStart, run as systemd would (its environment, its umask, $NOTIFY_SOCKET), serves on
the unit's unix socket and says READY=1 (Type=notify)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import curl, need_tool

pytestmark = pytest.mark.functional

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "pulp-content.service"
INSTALLED_BINARY = "/opt/pulp-content/bin/pulp-content"
SOCKET = "/run/pulp-content/content.sock"


def pulp_content_binary() -> str:
    """The `pulp-content` script installed beside this interpreter (the unit's venv)."""
    path = Path(sys.executable).with_name("pulp-content")
    assert path.exists(), f"no {path}: install the project into this environment"
    return str(path)


def settings_of(unit: str) -> dict[str, list[str]]:
    """[Service] keys and their values, in order (a key may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    tool = need_tool("systemd-analyze")
    unit = tmp_path / "pulp-content.service"
    unit.write_text(text.replace(INSTALLED_BINARY, pulp_content_binary()))
    return subprocess.run(
        [tool, "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )


def test_the_unit_passes_systemd_analyze_verify(tmp_path):
    done = verify(tmp_path, UNIT.read_text())
    assert done.returncode == 0 and done.stdout == done.stderr == "", done


def test_systemd_analyze_verify_sees_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt key and a missing program are reported."""
    broken = UNIT.read_text().replace("KillMode=", "KilMode=").replace("/bin/pulp-content", "/x")
    done = verify(tmp_path, broken)
    assert "Unknown key 'KilMode'" in done.stderr
    assert done.returncode != 0 and "is not executable" in done.stderr


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="pc-", dir="/tmp") as tmp:
        yield Path(tmp)


@pytest.mark.parametrize("workers", ["2", "1"])
def test_the_units_command_serves_and_notifies(short_tmp, workers):
    """ExecStart on a fresh machine (SQLite, created at the first start) with the unit's
    Environment= and UMask=; READY=1 arrives on $NOTIFY_SOCKET, from gunicorn and from the
    one-worker server alike, and the socket then answers."""
    service = settings_of(UNIT.read_text())
    assert service["Type"] == ["notify"]
    command = shlex.split(service["ExecStart"][0])
    assert command[0] == INSTALLED_BINARY and command[command.index("--workers") + 1] == "2"
    command[0] = pulp_content_binary()
    command[command.index("--workers") + 1] = workers
    path = short_tmp / "content.sock"  # RuntimeDirectory=, here
    assert f"unix:{SOCKET}" in command
    command = [f"unix:{path}" if arg == f"unix:{SOCKET}" else arg for arg in command]
    env = {"PATH": os.environ["PATH"], "NOTIFY_SOCKET": str(short_tmp / "notify")}
    for assignment in service["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value
    assert env["PULP_CONTENT_HOME"] == "/var/lib/pulp-content"
    env["PULP_CONTENT_HOME"] = str(short_tmp / "home")  # StateDirectory=, here
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(env["NOTIFY_SOCKET"])
        notify.settimeout(90)
        process = subprocess.Popen(
            command,
            env=env,
            umask=int(service["UMask"][0], 8),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        try:
            message = notify.recv(4096).decode()
            assert "READY=1" in message.splitlines()
            assert stat.S_IMODE(path.stat().st_mode) == 0o770
            reply = curl("http://localhost/readyz", "--unix-socket", str(path))
            assert reply.status == 200, reply
        finally:
            process.send_signal(signal.SIGTERM)  # KillMode=mixed: the main process first
            output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert b"Traceback" not in output
