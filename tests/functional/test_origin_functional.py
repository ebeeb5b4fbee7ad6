"""`PULP_CONTENT_CONTENT_PATH_PREFIX` and `PULP_CONTENT_CONTENT_ORIGIN` as an operator sets
them: `serve` (both designs) in a fresh process answers under the prefix only, and its
redirects are absolute on the origin and carry the prefix."""

from __future__ import annotations

import pytest

from pulp_content.fixtures.remote import FileSpec
from tests.functional.conftest import Client, ServiceProcess
from tests.functional.test_legacy_functional import redirect_design

pytestmark = pytest.mark.functional

PREFIX = "/content/v1/"
ORIGIN = "https://content.example.com"
FILES = [FileSpec("a.bin", 3000, 41), FileSpec("dir/b.bin", 100, 42)]


@pytest.fixture
def custom(scenario, monkeypatch):
    """A stored publication at `pub`, and the environment of a service under PREFIX."""
    scenario.publish("pub", FILES, "immediate")
    monkeypatch.setenv("PULP_CONTENT_CONTENT_PATH_PREFIX", PREFIX)
    monkeypatch.setenv("PULP_CONTENT_CONTENT_ORIGIN", ORIGIN)
    return scenario


# A path without its trailing slash, and where the service sends the client.
REDIRECTS = {
    PREFIX.rstrip("/"): PREFIX,  # the prefix itself
    f"{PREFIX}pub": f"{PREFIX}pub/",  # a distribution
    f"{PREFIX}pub/dir": f"{PREFIX}pub/dir/",  # a directory
}


def test_serve_answers_under_the_prefix_and_not_the_old_one(custom, db):
    with ServiceProcess(db, workers=1) as process:
        client = Client(process)
        served = client.get(f"{PREFIX}pub/a.bin")
        old = [client.get(p).status for p in ("/pulp/content/pub/a.bin", "/pulp/content/")]
        # The probes stay at the root, beside the prefix.
        probes = [client.get(path).status for path in ("/livez", "/readyz", "/metrics")]
        redirects = {path: client.get(path) for path in REDIRECTS}
        listings = [client.get(p) for p in (PREFIX, f"{PREFIX}pub/", f"{PREFIX}pub/dir/")]
    assert served.status == 200 and served.body == b"".join(FILES[0].chunks())
    assert old == [404, 404]
    assert probes == [200, 200, 200]
    for path, reply in redirects.items():
        assert (reply.status, reply.headers["Location"]) == (301, ORIGIN + REDIRECTS[path])
    root, top, below = listings
    assert [reply.status for reply in listings] == [200, 200, 200]
    assert f"Index of {PREFIX}</title>".encode() in root.body
    assert b'<a href="pub/">pub/</a>' in root.body
    # Links are relative: under the prefix, whatever name the client used for the host.
    assert f"Index of {PREFIX}pub/</title>".encode() in top.body
    assert b'<a href="dir/">dir/</a>' in top.body and b'<a href="a.bin">' in top.body
    assert b'<a href="b.bin">' in below.body


def test_the_redirect_design_serves_under_the_prefix_too(custom):
    with redirect_design() as (app, _):
        assert app.get(f"{PREFIX}pub/a.bin").status == 200
        assert app.get("/pulp/content/pub/a.bin").status == 404
