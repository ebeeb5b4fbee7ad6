"""Upstream redirects: followed, and a remote's credentials (its extra headers and basic
auth) go to the remote's own origin only, never to the host or port a redirect names."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import Fault, FileSpec, FixtureRemote

pytestmark = pytest.mark.functional

FILE = FileSpec("f.bin", 50_000, 31)
TOKEN = "X-Mirror-Token"


@pytest.fixture
def elsewhere() -> Iterator[FixtureRemote]:
    """A second fixture remote: another origin (another port) that records the headers
    of every request it gets."""
    other = FixtureRemote()
    with Background(other):
        yield other


def credentials(scenario, how: str) -> tuple[str, tuple[str, ...]]:
    """The manifest URL of a basic-auth repository `private` and the `remote create`
    options that carry its user name, password and token header."""
    scenario.remote.add_repository("private", [FILE])
    scenario.remote.set_fault("private", Fault("basic_auth", username="u", password="pw-1"))
    url = scenario.remote.manifest_url("private")
    header = ("--header", f"{TOKEN}: token-1")
    if how == "options":
        return url, ("--username", "u", "--password", "pw-1", *header)
    return url.replace("http://", "http://u:pw-1@"), header


def lazy_private_distribution(scenario, how: str) -> str:
    url, options = credentials(scenario, how)
    scenario.sync_from("private", url, "--policy", "on_demand", *options)
    scenario.cli(
        "distribution", "create", "private", "--base-path", "private", "--repository", "private"
    )
    return "/pulp/content/private/f.bin"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.mark.parametrize("how", ["options", "url"])
def test_credentials_stay_behind_on_a_cross_origin_redirect(scenario, client, elsewhere, how):
    path = lazy_private_distribution(scenario, how)
    elsewhere.add_repository("private", [FILE])
    target = elsewhere.file_url("private", "f.bin")
    scenario.remote.set_fault("private/f.bin", Fault("redirect", location=target))
    response = client.get(path)
    assert response.status == 200 and response.body == FILE.content()
    assert scenario.remote.count("/private/f.bin") == 1
    assert elsewhere.count("/private/f.bin") == 1
    received = {k.lower(): v for k, v in elsewhere.last_headers["/private/f.bin"].items()}
    assert "authorization" not in received
    assert TOKEN.lower() not in received
    assert not any("token-1" in v or "pw-1" in v for v in received.values()), received
    assert received["user-agent"].startswith("pulp-content/")


def test_credentials_follow_a_redirect_within_the_origin(scenario, client):
    path = lazy_private_distribution(scenario, "options")
    scenario.remote.add_repository("moved", [FILE])
    scenario.remote.set_fault("moved", Fault("basic_auth", username="u", password="pw-1"))
    # A relative Location, as many servers send: resolved against the URL that answered.
    scenario.remote.set_fault("private/f.bin", Fault("redirect", location="/moved/f.bin"))
    response = client.get(path)
    assert response.status == 200 and response.body == FILE.content()
    received = scenario.remote.last_headers["/moved/f.bin"]
    assert received["Authorization"] == basic("u", "pw-1")
    assert received[TOKEN] == "token-1"


def test_sync_follows_a_cross_origin_redirect_without_credentials(scenario, elsewhere):
    url, options = credentials(scenario, "options")
    elsewhere.add_repository("private", [FILE])
    target = elsewhere.manifest_url("private")
    scenario.remote.set_fault("private/PULP_MANIFEST", Fault("redirect", location=target))
    scenario.sync_from("private", url, "--policy", "on_demand", *options)
    received = {k.lower() for k in elsewhere.last_headers["/private/PULP_MANIFEST"]}
    assert "authorization" not in received and TOKEN.lower() not in received


def test_a_redirect_loop_is_a_502(scenario, client):
    path = lazy_private_distribution(scenario, "options")
    scenario.remote.set_fault("private/f.bin", Fault("redirect", location="/private/f.bin"))
    response = client.get(path)
    assert response.status == 502
    assert b"redirected more than 10 times" in response.body
    assert scenario.remote.count("/private/f.bin") == 11
