"""gunicorn's settings for `serve --workers N` (`--config python:` this module): the life
of the directory where the workers keep their metrics (`service.metrics`).

The directory is PROMETHEUS_MULTIPROC_DIR when the operator sets it (it then belongs to
this service: what an earlier run left in it is removed at start), else a private one
the master makes before it starts any worker and removes when it exits. A worker that
exits is marked dead, so its gauges of what goes on now stop counting; its counters
still do. Only the standard library is imported here: prometheus_client decides its
mode when it is first imported, which must be after the directory is known.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import tempfile
from typing import Any

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
OWNED = "pulp_content_metrics_dir"  # the arbiter's attribute: the directory it made


def on_starting(server: Any) -> None:
    """In the master, before the first worker: the directory, empty."""
    directory = os.environ.get(MULTIPROCESS_DIR)
    if directory:
        clear_directory(directory)
        return
    directory = tempfile.mkdtemp(prefix="pulp-content-metrics-")  # mode 0700
    os.environ[MULTIPROCESS_DIR] = directory  # the workers inherit it
    setattr(server, OWNED, directory)


def child_exit(server: Any, worker: Any) -> None:
    """In the master, once a worker has exited: its live gauges go."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ[MULTIPROCESS_DIR])


def on_exit(server: Any) -> None:
    """In the master, last: the directory it made goes (the operator's stays)."""
    directory = getattr(server, OWNED, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def clear_directory(directory: str) -> None:
    """The directory, made if missing, without the files an earlier run left
    (prometheus_client asks for that before each start: a killed run's live gauges would
    count as live)."""
    os.makedirs(directory, mode=0o700, exist_ok=True)
    for path in glob.glob(os.path.join(directory, "*.db")):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)
