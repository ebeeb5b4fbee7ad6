"""The shipped systemd units: `systemd-analyze verify` finds nothing wrong with them; the
service's ExecStart, run as systemd would (its environment, its umask, $NOTIFY_SOCKET),
serves on the unit's unix socket and says READY=1 (Type=notify); and run by
systemd-socket-activate, it serves on the socket passed to it (pulp-content.socket)."""

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

from tests.helpers import curl, eventually, need_tool

pytestmark = pytest.mark.functional

UNIT = Path(__file__).parents[2] / "deploy" / "systemd" / "pulp-content.service"
SOCKET_UNIT = UNIT.with_suffix(".socket")
INSTALLED_BINARY = "/opt/pulp-content/bin/pulp-content"
SOCKET = "/run/pulp-content/content.sock"


def pulp_content_binary() -> str:
    """The `pulp-content` script installed beside this interpreter (the unit's venv)."""
    path = Path(sys.executable).with_name("pulp-content")
    assert path.exists(), f"no {path}: install the project into this environment"
    return str(path)


def settings_of(unit: str, wanted: str = "[Service]") -> dict[str, list[str]]:
    """A section's keys and their values, in order (a key may repeat)."""
    values: dict[str, list[str]] = {}
    section = ""
    for line in unit.splitlines():
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == wanted and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values.setdefault(key, []).append(value)
    return values


def verify(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    """systemd-analyze verify on the socket unit and on `text` as the service unit."""
    tool = need_tool("systemd-analyze")
    unit = tmp_path / "pulp-content.service"
    unit.write_text(text.replace(INSTALLED_BINARY, pulp_content_binary()))
    (tmp_path / SOCKET_UNIT.name).write_text(SOCKET_UNIT.read_text())
    return subprocess.run(
        [tool, "verify", str(tmp_path / SOCKET_UNIT.name), str(unit)],
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


def test_the_socket_unit_listens_where_the_service_binds():
    socket_unit = settings_of(SOCKET_UNIT.read_text(), "[Socket]")
    assert socket_unit["ListenStream"] == [SOCKET]
    assert f"unix:{SOCKET}" in shlex.split(settings_of(UNIT.read_text())["ExecStart"][0])
    assert socket_unit["SocketMode"] == ["0660"]  # as UMask=0007 makes the service's own


def unit_command(socket_path: Path, home: Path, workers: str) -> tuple[list[str], dict[str, str]]:
    """The service's ExecStart and environment, with the paths and --workers given."""
    service = settings_of(UNIT.read_text())
    command = shlex.split(service["ExecStart"][0])
    assert command[0] == INSTALLED_BINARY and command[command.index("--workers") + 1] == "2"
    command[0] = pulp_content_binary()
    command[command.index("--workers") + 1] = workers
    assert f"unix:{SOCKET}" in command  # RuntimeDirectory=, here
    command = [f"unix:{socket_path}" if arg == f"unix:{SOCKET}" else arg for arg in command]
    env = {"PATH": os.environ["PATH"]}
    for assignment in service["Environment"]:
        key, _, value = assignment.partition("=")
        env[key] = value
    assert env["PULP_CONTENT_HOME"] == "/var/lib/pulp-content"
    env["PULP_CONTENT_HOME"] = str(home)  # StateDirectory=, here
    return command, env


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
    path = short_tmp / "content.sock"
    command, env = unit_command(path, short_tmp / "home", workers)
    env["NOTIFY_SOCKET"] = str(short_tmp / "notify")
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


@pytest.mark.parametrize("workers", ["2", "1"])
def test_socket_activation(short_tmp, workers):
    """systemd-socket-activate holds the socket, as pulp-content.socket does, and starts
    the unit's ExecStart on the first connection, which waits meanwhile (no refusal);
    the service leaves the socket file, which is systemd's, where it was."""
    activate = need_tool("systemd-socket-activate")
    path = short_tmp / "content.sock"
    command, env = unit_command(path, short_tmp / "home", workers)
    setenv = [f"--setenv={key}={value}" for key, value in env.items()]
    process = subprocess.Popen(
        [activate, f"--listen={path}", *setenv, *command],
        env={"PATH": os.environ["PATH"]},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        assert eventually(lambda: path.exists(), timeout=30)
        reply = curl("http://localhost/readyz", "--unix-socket", str(path))  # starts it
        assert reply.status == 200, reply
        assert curl("http://localhost/livez", "--unix-socket", str(path)).status == 200
    finally:
        process.send_signal(signal.SIGTERM)  # by now the service itself: exec'ed in place
        output, _ = process.communicate(timeout=60)
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "on the socket systemd passed" in text and "Traceback" not in text
    assert stat.S_ISSOCK(path.stat().st_mode)  # systemd's; the next connection restarts it
