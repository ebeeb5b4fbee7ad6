"""The reviewable evidence of the merge: the client's side of one lazy download from each
design, recorded with vcrpy. The merged cassette holds one request; the redirect one
holds the content app's 302 and the streamer's 200.

Replayed by default (no service needed). To record again:

    PULP_CONTENT_RECORD=1 pytest tests/functional/test_design_cassettes_functional.py
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from urllib.parse import urlsplit

import aiohttp
import pytest

from pulp_content.fixtures.bench import CLI, wait_listening
from pulp_content.fixtures.remote import FileSpec
from tests.cassettes import RECORD, cassette

pytestmark = pytest.mark.functional

MERGED, CONTENT_APP, STREAMER = 48190, 48191, 48192  # fixed: recorded URLs carry them
FILE = FileSpec("evidence.bin", 1500, 41)
PATH = "/pulp/content/evidence/evidence.bin"


@contextlib.contextmanager
def running(*args: str, ports: tuple[int, ...]) -> Iterator[None]:
    process = subprocess.Popen(
        [*CLI, "serve", *args],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in ports:
            wait_listening(port, process)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def designs(request) -> Iterator[None]:
    """When recording: one lazy file, and both designs serving it on the fixed ports."""
    if not RECORD:
        yield
        return
    scenario = request.getfixturevalue("scenario")
    scenario.publish("evidence", [FILE], "on_demand")
    with contextlib.ExitStack() as stack:
        stack.enter_context(running("--bind", f"127.0.0.1:{MERGED}", ports=(MERGED,)))
        stack.enter_context(
            running(
                "--design",
                "redirect",
                "--bind",
                f"127.0.0.1:{CONTENT_APP}",
                "--streamer-port",
                str(STREAMER),
                ports=(CONTENT_APP, STREAMER),
            )
        )
        yield


async def download(port: int) -> tuple[int, bytes]:
    """What pip or curl -L would do: GET, following redirects."""
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}{PATH}") as response,
    ):
        return response.status, await response.read()


def test_merged_design_answers_a_lazy_download_in_one_request(designs):
    with cassette("design_merged_lazy_download", (MERGED, CONTENT_APP, STREAMER)) as cass:
        status, body = asyncio.run(download(MERGED))
    assert (status, body) == (200, FILE.content())
    assert [r["status"]["code"] for r in cass.responses] == [200]
    assert RECORD or cass.all_played


def test_redirect_design_needs_a_302_and_a_second_request(designs):
    with cassette("design_redirect_lazy_download", (MERGED, CONTENT_APP, STREAMER)) as cass:
        status, body = asyncio.run(download(CONTENT_APP))
    assert (status, body) == (200, FILE.content())
    assert [r["status"]["code"] for r in cass.responses] == [302, 200]
    assert [urlsplit(r.uri).port for r in cass.requests] == [CONTENT_APP, STREAMER]
    location = cass.responses[0]["headers"]["Location"]
    assert location[0] == f"http://127.0.0.1:{STREAMER}/streamer/evidence/evidence.bin"
    assert RECORD or cass.all_played
