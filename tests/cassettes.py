"""vcrpy cassettes in pulp_content/fixtures/cassettes/: replayed by default, recorded again with
PULP_CONTENT_RECORD=1 (against live processes on fixed ports)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import vcr

from pulp_content import fixtures

RECORD = os.environ.get("PULP_CONTENT_RECORD") == "1"
CASSETTES = Path(fixtures.__file__).parent / "cassettes"


def cassette(name: str, ports: tuple[int, ...]) -> Any:
    """Record or replay only the requests to `ports`; every other request (vcrpy patches
    every client, the tests' own too) goes through untouched."""

    def keep(request: vcr.request.Request) -> vcr.request.Request | None:
        return request if urlsplit(request.uri).port in ports else None

    if RECORD:
        # Recording appends to a cassette that exists: start from an empty one.
        (CASSETTES / f"{name}.yaml").unlink(missing_ok=True)
    return vcr.VCR(
        cassette_library_dir=str(CASSETTES),
        record_mode="all" if RECORD else "none",
        before_record_request=keep,
        match_on=["method", "scheme", "host", "port", "path", "query"],
    ).use_cassette(f"{name}.yaml")
