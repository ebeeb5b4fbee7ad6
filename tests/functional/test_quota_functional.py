"""`remote create/update --quota`: a remote's on_demand and pull-through files stay
within it, least recently used out first, and a file larger than it is served, not kept."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import FileSpec
from tests.functional.conftest import Client, ServiceServer
from tests.functional.test_reclaim_functional import artifact_row, fetch_all, stored
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

A, B, C = (FileSpec(f"{name}.bin", 60_000, 70 + i) for i, name in enumerate("abc"))
QUOTA = 150_000  # two of them


def stored_bytes(settings, specs) -> int:
    return sum(spec.size for spec in specs if stored(settings, spec))


def test_quota_evicts_the_least_recently_used_and_a_request_fetches_it_again(scenario):
    base = scenario.publish("q", [A, B, C], "on_demand")
    scenario.cli("remote", "update", "q", "--quota", str(QUOTA))
    settings = scenario.settings
    server = ServiceServer(dataclasses.replace(settings, last_used_interval=0.1))
    with Background(server):
        client = Client(server)
        fetch_all(client, base, [A, B])
        assert client.get(base + A.relative_path).status == 200  # A served after B came
        assert eventually(lambda: artifact_row(A).last_used is not None)

        fetch_all(client, base, [C])  # past the quota: B, least recently used, goes
        assert eventually(lambda: not stored(settings, B))
        assert stored(settings, A) and stored(settings, C)
        assert artifact_row(B) is None
        assert stored_bytes(settings, [A, B, C]) <= QUOTA

        reply = client.get(base + B.relative_path)  # lazy again: fetched anew
        assert reply.status == 200 and reply.body == B.content()
        assert scenario.remote.count(f"/q/{B.relative_path}") == 2
        assert eventually(lambda: stored(settings, B) and not stored(settings, A))
        assert stored_bytes(settings, [A, B, C]) <= QUOTA
    for spec in (A, C):
        assert scenario.remote.count(f"/q/{spec.relative_path}") == 1


def test_a_file_larger_than_the_quota_is_served_and_not_kept(scenario, client):
    base = scenario.publish("small", [A], "on_demand")
    scenario.cli("remote", "update", "small", "--quota", "50k")
    for attempt in (1, 2):
        reply = client.get(base + A.relative_path)
        assert reply.status == 200 and reply.body == A.content()
        assert scenario.remote.count(f"/small/{A.relative_path}") == attempt
    assert not stored(scenario.settings, A) and artifact_row(A) is None


def test_quota_is_shown_and_zero_lifts_it(scenario):
    scenario.cli("remote", "create", "r", "--url", "http://example.invalid/PULP_MANIFEST")
    scenario.cli("remote", "update", "r", "--quota", "10G")
    shown = json.loads(scenario.cli("remote", "show", "r", "--json"))
    assert shown["quota"] == 10 * 1024**3
    scenario.cli("remote", "update", "r", "--quota", "0")
    assert json.loads(scenario.cli("remote", "show", "r", "--json"))["quota"] is None


@pytest.mark.parametrize("quota", ["lots", "-1", "1.5.5G"])
def test_a_bad_quota_is_one_error_line(db, quota):
    env = dict(os.environ)
    done = run_command(
        "remote", "create", "r", "--url", "http://h/PULP_MANIFEST", "--quota", quota, env=env
    )
    assert done.returncode != 0 and done.stdout == ""
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "--quota" in errors[0], done.stderr
