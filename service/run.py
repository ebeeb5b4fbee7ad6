"""Run the service in this process (one worker)."""

from __future__ import annotations

import logging

from aiohttp import web

from service.accesslog import RUNNER_OPTIONS
from service.app import create_app
from service.config import Settings


def run_merged(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted; prints where it listens."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    app = create_app(settings)
    web.run_app(
        app,
        host=host,
        port=port,
        **RUNNER_OPTIONS,  # type: ignore[arg-type]
        print=lambda _: print(
            f"pulp-content serving http://{host}:{port}{settings.content_prefix} "
            f"(storage {settings.storage_root})",
            flush=True,
        ),
    )
