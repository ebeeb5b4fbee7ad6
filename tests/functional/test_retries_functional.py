"""Upstream retries before the first byte, against the live fixture remote: what the
client gets, and how many requests the upstream saw."""

from __future__ import annotations

import email.utils
import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.retries import MAX_WAIT
from tests.helpers import eventually

pytestmark = pytest.mark.functional

FILE = FileSpec("big.bin", 300 * 1024, 11)
OTHER = FileSpec("other.bin", 2000, 12)


def lazy(scenario, name: str, *options: str) -> str:
    """An on_demand repository `name` holding FILE, distributed; its content path."""
    url = scenario.remote.add_repository(name, [FILE, OTHER])
    timeouts = ("--connect-timeout", "2", "--sock-read-timeout", "2")
    scenario.sync_from(name, url, "--policy", "on_demand", *timeouts, *options)
    scenario.cli("distribution", "create", name, "--base-path", name, "--repository", name)
    return f"/pulp/content/{name}/big.bin"


def timed(client, path: str):
    start = time.monotonic()
    reply = client.get(path)
    return reply, time.monotonic() - start


def test_a_503_with_retry_after_is_retried_and_the_client_gets_the_file(scenario, client):
    path = lazy(scenario, "flaky")
    scenario.remote.set_fault("flaky/big.bin", Fault("status", status=503, retry_after=1, first=2))
    reply, seconds = timed(client, path)
    assert reply.status == 200 and reply.complete and reply.body == FILE.content()
    assert scenario.remote.count("/flaky/big.bin") == 3  # two 503s, then the file
    assert seconds >= 1.9  # each Retry-After: 1 was waited for


def test_a_429_with_an_http_date_is_retried(scenario, client):
    path = lazy(scenario, "throttled")
    later = email.utils.formatdate(time.time() + 2, usegmt=True)
    scenario.remote.set_fault(
        "throttled/big.bin", Fault("status", status=429, retry_after=later, first=1)
    )
    reply = client.get(path)
    assert reply.status == 200 and reply.body == FILE.content()
    assert scenario.remote.count("/throttled/big.bin") == 2


def test_a_connection_dropped_before_the_headers_is_retried(scenario, client):
    path = lazy(scenario, "dropped")
    scenario.remote.set_fault("dropped/big.bin", Fault("reset", first=2))
    reply = client.get(path)
    assert reply.status == 200 and reply.body == FILE.content()
    assert scenario.remote.count("/dropped/big.bin") == 3


def test_a_404_is_not_retried(scenario, client):
    path = lazy(scenario, "gone")
    scenario.remote.set_fault("gone/big.bin", Fault("status", status=404))
    assert client.get(path).status == 502
    assert scenario.remote.count("/gone/big.bin") == 1


def test_a_retry_after_over_the_cap_fails_at_once_with_the_upstreams_status(scenario, client):
    path = lazy(scenario, "later")
    wait = int(MAX_WAIT) + 50
    scenario.remote.set_fault("later/big.bin", Fault("status", status=503, retry_after=wait))
    reply, seconds = timed(client, path)
    assert reply.status == 502
    assert seconds < 5
    body = reply.body.decode()
    assert "503" in body and f"Retry-After {wait} s" in body, body
    assert scenario.remote.count("/later/big.bin") == 1


def test_a_lasting_failure_is_a_502_after_every_retry(scenario, client):
    path = lazy(scenario, "down", "--retries", "2")
    scenario.remote.set_fault("down/big.bin", Fault("status", status=500))
    reply = client.get(path)
    assert reply.status == 502
    assert "answered 500" in reply.body.decode() and "after 2 retries" in reply.body.decode()
    assert scenario.remote.count("/down/big.bin") == 3


def test_zero_retries_is_a_502_after_one_request(scenario, client):
    path = lazy(scenario, "once", "--retries", "0")
    shown = json.loads(scenario.cli("remote", "show", "once", "--json"))
    assert shown["retries"] == 0
    scenario.remote.set_fault("once/big.bin", Fault("status", status=503, retry_after=1, first=1))
    assert client.get(path).status == 502
    assert scenario.remote.count("/once/big.bin") == 1


def test_clients_of_one_download_share_its_retries(scenario, client):
    path = lazy(scenario, "shared")
    scenario.remote.set_fault("shared/big.bin", Fault("status", status=503, retry_after=1, first=1))
    with ThreadPoolExecutor(5) as pool:
        replies = list(pool.map(lambda _: client.get(path), range(5)))
    assert all(r.status == 200 and r.body == FILE.content() for r in replies)
    # One download asked twice (the 503, then the file), whoever joined it when.
    assert scenario.remote.count("/shared/big.bin") == 2


def test_a_pull_through_download_is_retried(scenario, client):
    scenario.remote.add_repository("pt", [FILE])
    url = scenario.remote.base_url + "/pt/"
    scenario.cli("remote", "create", "pt", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pt")
    scenario.remote.set_fault("pt/big.bin", Fault("status", status=503, retry_after=0, first=2))
    reply = client.get("/pulp/content/pt/big.bin")
    assert reply.status == 200 and reply.body == FILE.content()
    assert scenario.remote.count("/pt/big.bin") == 3


def test_an_immediate_sync_retries_the_manifest_and_the_files(scenario):
    url = scenario.remote.add_repository("mirror", [FILE, OTHER])
    scenario.remote.set_fault("mirror/PULP_MANIFEST", Fault("status", status=502, first=1))
    scenario.remote.set_fault("mirror/big.bin", Fault("status", status=503, retry_after=1, first=1))
    scenario.remote.set_fault("mirror/other.bin", Fault("reset", first=2))
    scenario.sync_from("mirror", url, "--policy", "immediate")
    assert scenario.remote.count("/mirror/PULP_MANIFEST") == 2
    assert scenario.remote.count("/mirror/big.bin") == 2
    assert scenario.remote.count("/mirror/other.bin") == 3

    from pulp_content.service.models import Artifact

    assert eventually(lambda: Artifact.objects.count() == 2)


def test_a_refused_connection_is_retried_then_reported(scenario):
    from click.testing import CliRunner

    from pulp_content.cli.common import free_port
    from pulp_content.cli.main import cli as pulp_content

    nobody = f"http://127.0.0.1:{free_port()}/repo/PULP_MANIFEST"
    scenario.cli("remote", "create", "nobody", "--url", nobody, "--retries", "2")
    scenario.cli("repository", "create", "nobody", "--remote", "nobody")
    result = CliRunner().invoke(pulp_content, ["repository", "sync", "nobody"])
    assert result.exit_code == 1
    assert "cannot connect" in result.stderr and "after 2 retries" in result.stderr
