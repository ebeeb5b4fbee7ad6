"""Run the service in this process (one worker)."""

from __future__ import annotations

import contextlib
import os

from aiohttp import web

from pulp_content.service.accesslog import RUNNER_OPTIONS, configure_logging
from pulp_content.service.app import create_app
from pulp_content.service.config import Listen, Settings


def run_merged(settings: Settings, listen: Listen) -> None:
    """Serve until interrupted; prints where it listens. A unix socket's mode is what the
    process's umask leaves (as with `--workers`)."""
    configure_logging()
    app = create_app(settings)
    where: dict[str, object] = {"host": listen.host, "port": listen.port}
    if listen.path is not None:
        where = {"path": listen.path}
    web.run_app(
        app,
        **where,  # type: ignore[arg-type]
        **RUNNER_OPTIONS,  # type: ignore[arg-type]
        print=lambda _: print(
            f"pulp-content serving {listen.describe(settings.content_prefix)} "
            f"(storage {settings.storage_root})",
            flush=True,
        ),
    )
    if listen.path is not None:  # as gunicorn does: no stale socket file left behind
        with contextlib.suppress(FileNotFoundError):
            os.unlink(listen.path)
