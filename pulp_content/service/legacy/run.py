"""`pulp-content serve --design redirect`: the WSGI content app and the streamer, as two
processes, stopped together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from types import FrameType

from pulp_content.service.config import Settings
from pulp_content.service.legacy.settings import ENV, default_content

GUNICORN_THREADS = 4  # one process, a few requests at once: comparable to one merged worker


def commands(host: str, port: int, streamer_port: int) -> list[list[str]]:
    return [
        [
            sys.executable,
            "-m",
            "pulp_content.cli",
            "legacy-streamer",
            "--bind",
            f"{host}:{streamer_port}",
        ],
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            "1",
            "--threads",
            str(GUNICORN_THREADS),
            "--log-level",
            "warning",
            "--no-control-socket",
            "pulp_content.service.legacy.wsgi:create_application()",
        ],
    ]


def run_redirect(
    settings: Settings,
    host: str,
    port: int,
    streamer_port: int,
    web_server: str = "django",
    redirect: bool = True,
) -> int:
    """Run both processes until one exits or a signal arrives; returns the exit status."""
    content = default_content(streamer_port, host)
    content["WEB_SERVER"] = web_server
    content["REDIRECT"]["ENABLED"] = redirect
    # Each of the two processes has a /metrics of its own (the bench adds them up): no
    # multiprocess directory, whatever the environment says.
    inherited = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    env = {
        **inherited,
        ENV: json.dumps(content),
        "PULP_CONTENT_HOME": str(settings.home),
        "PULP_CONTENT_DATABASE_URL": settings.database_url,
    }
    processes = [
        subprocess.Popen(command, env=env) for command in commands(host, port, streamer_port)
    ]
    print(
        f"pulp-content (redirect design) content app http://{host}:{port}"
        f"{settings.content_prefix}, streamer http://{host}:{streamer_port}/streamer/",
        flush=True,
    )
    stopping: list[int] = []

    def stop(signum: int, frame: FrameType | None) -> None:
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        while not stopping and all(p.poll() is None for p in processes):
            time.sleep(0.2)
    finally:
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
    failed = [p.returncode for p in processes if p.returncode not in (0, -signal.SIGTERM)]
    return 0 if stopping or not failed else failed[0]
