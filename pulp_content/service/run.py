"""Run the service in this process (one worker)."""

from __future__ import annotations

import contextlib
import os
import socket

from aiohttp import web

from pulp_content.service.accesslog import RUNNER_OPTIONS, configure_logging
from pulp_content.service.app import create_app
from pulp_content.service.config import Listen, Settings
from pulp_content.service.gunicorn_hooks import clear_directory
from pulp_content.service.metrics import multiprocess_directory


def run_merged(settings: Settings, listen: Listen) -> None:
    """Serve until interrupted; prints where it listens. A unix socket's mode is what the
    process's umask leaves (as with `--workers`)."""
    configure_logging(settings.log_level)
    directory = multiprocess_directory()
    if directory is not None:  # the operator's: what an earlier run left would count
        clear_directory(directory)
    app = create_app(settings)
    where: dict[str, object] = {"host": listen.host, "port": listen.port}
    if listen.fd is not None:
        where = {"sock": socket.socket(fileno=listen.fd)}
    elif listen.path is not None:
        where = {"path": listen.path}
    web.run_app(
        app,
        **where,  # type: ignore[arg-type]
        **RUNNER_OPTIONS,  # type: ignore[arg-type]
        print=lambda _: started(
            f"pulp-content serving {listen.describe(settings.content_prefix)} "
            f"(storage {settings.storage_shown})"
        ),
    )
    if listen.path is not None and listen.fd is None:  # as gunicorn: no stale socket left
        # (systemd's socket is systemd's: it stays, and starts the next run)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listen.path)


def started(line: str) -> None:
    """Listening: say where, and tell systemd (a `Type=notify` unit), as gunicorn does."""
    print(line, flush=True)
    notify_systemd("READY=1")


def notify_systemd(state: str) -> None:
    """sd_notify(3) without libsystemd: one datagram to $NOTIFY_SOCKET, if it is set."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):  # the abstract namespace
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(address)
            sock.sendall(state.encode())
        except OSError as exc:  # systemd goes on without it, and says so after a timeout
            print(f"cannot notify systemd at {address!r}: {exc.strerror or exc}", flush=True)
