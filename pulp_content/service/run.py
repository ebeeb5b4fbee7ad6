"""Run the service in this process (one worker)."""

from __future__ import annotations

from aiohttp import web

from pulp_content.service.accesslog import RUNNER_OPTIONS, configure_logging
from pulp_content.service.app import create_app
from pulp_content.service.config import Settings


def run_merged(settings: Settings, host: str, port: int) -> None:
    """Serve until interrupted; prints where it listens."""
    configure_logging()
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
