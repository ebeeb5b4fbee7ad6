"""Many worker processes on one port, under gunicorn's aiohttp worker:

    gunicorn --worker-class aiohttp.GunicornWebWorker service.workers:create_runner

Each worker configures Django for itself from the environment. Downloads are shared
across workers through locks on the storage filesystem (see `service.download`).
"""

from __future__ import annotations

import os
import sys

from aiohttp import web

from pulp_content.service.config import Listen, Settings


async def create_runner() -> web.AppRunner:
    """The merged service for one gunicorn worker, which awaits this in its own loop.

    Returning a ready AppRunner (aiohttp's worker accepts one from an async factory)
    keeps our access logger, which also keeps the /metrics counters.
    """
    from pulp_content.service.config import configure_django, load_settings

    settings = load_settings()
    configure_django(settings)  # before anything imports the models
    from pulp_content.service.accesslog import RUNNER_OPTIONS, configure_logging
    from pulp_content.service.app import create_app
    from pulp_content.service.keys import METRICS

    configure_logging(settings.log_level)  # gunicorn configures its own loggers only
    app = create_app(settings)
    # The scrape's process_* metrics cover the master too (service.metrics).
    app[METRICS].master = os.getppid()
    return web.AppRunner(app, **RUNNER_OPTIONS)  # type: ignore[arg-type]


def exec_workers(settings: Settings, listen: Listen, workers: int) -> None:
    """Replace this process with gunicorn running `workers` merged-service workers."""
    os.environ["PULP_CONTENT_HOME"] = str(settings.home)
    os.environ["PULP_CONTENT_DATABASE_URL"] = settings.database_url
    print(
        f"pulp-content serving {listen.describe(settings.content_prefix)} with {workers} "
        f"workers (storage {settings.storage_shown})",
        flush=True,
    )
    umask = os.umask(0o077)
    os.umask(umask)
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "aiohttp.GunicornWebWorker",
        "--workers",
        str(workers),
        # Ignored when systemd passed a socket: gunicorn takes it ($LISTEN_FDS, kept for it).
        "--bind",
        str(listen),
        # gunicorn makes its unix socket with a umask of its own (0: anyone may connect);
        # this process's, as the one-worker server does, so the unit's UMask= decides.
        "--umask",
        oct(umask),
        # In-flight downloads get this long to finish or clean up on SIGTERM.
        "--graceful-timeout",
        "30",
        "--no-control-socket",  # several servers (and the tests) run side by side
        "--log-level",
        settings.log_level,
        # The metrics directory: made before the workers, marked as they exit.
        "--config",
        "python:pulp_content.service.gunicorn_hooks",
        "pulp_content.service.workers:create_runner",
    ]
    os.execv(sys.executable, argv)
