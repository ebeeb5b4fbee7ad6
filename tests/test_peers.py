"""service.peers: the tokens hosts sign their requests for each other's downloads with,
and what a request of another host's download looks like; and where `serve --bind`
says other hosts reach it."""

from __future__ import annotations

import pytest

from pulp_content.cli.common import peer_url_of
from pulp_content.service.config import Listen
from pulp_content.service.peers import HEADER, ROUTE, Peers
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import RemoteRef, RemoteSource

SECRET = b"0123456789abcdef" * 4
NOW = 1_800_000_000.0


def peers(now: float = NOW, secret: bytes = SECRET) -> Peers:
    return Peers("http://10.0.0.1:24816", secret, clock=lambda: now)


def test_a_token_admits_what_it_was_made_for_until_it_expires():
    token = peers().token("abc", "/pulp/content/d/f")
    assert peers().admit(token, "abc", "/pulp/content/d/f")
    assert peers(NOW + 60).admit(token, "abc", "/pulp/content/d/f")
    assert not peers(NOW + 61).admit(token, "abc", "/pulp/content/d/f")


@pytest.mark.parametrize(
    "token, name, path",
    [
        (None, "other", "/pulp/content/d/f"),  # another download
        (None, "abc", "/pulp/content/d/g"),  # another file
        ("", "abc", "/pulp/content/d/f"),
        ("garbage", "abc", "/pulp/content/d/f"),
        ("1800000030.", "abc", "/pulp/content/d/f"),
        ("-5.ab", "abc", "/pulp/content/d/f"),
        ("99999999999999999999.ab", "abc", "/pulp/content/d/f"),
    ],
)
def test_a_token_admits_nothing_else(token, name, path):
    made = peers().token("abc", "/pulp/content/d/f")
    assert not peers().admit(made if token is None else token, name, path)


def test_another_secret_or_a_far_expiry_is_refused():
    assert not peers().admit(peers(secret=b"x" * 64).token("abc", "/p"), "abc", "/p")
    # Made to last a day: no host makes such a token, so none is taken.
    assert not peers().admit(peers(NOW + 86_400).token("abc", "/p"), "abc", "/p")


def test_a_source_read_from_a_peer_keeps_the_digests_and_saves_nothing():
    remote = RemoteConfig(id=3, name="r", url="http://up/", policy="on_demand", password="pw")
    ref = RemoteRef(9, remote, "http://up/f", 5, {"sha256": "e" * 64})
    src = RemoteSource("/pulp/content/d/f", None, "publication", "f", 7, (ref,), 5, "e" * 64)
    read = peers().source(src, "http://10.0.0.2:24816", "abc")
    (peer,) = read.remote_artifacts
    assert peer.url == f"http://10.0.0.2:24816{ROUTE}?name=abc&path=%2Fpulp%2Fcontent%2Fd%2Ff"
    assert peer.digests == {"sha256": "e" * 64} and peer.size == 5
    assert read.policy == "streamed" and read.content_artifact_id == 7
    assert peer.config.password is None and peer.config.retries == 0
    token = dict(peer.config.headers)[HEADER]
    assert peers().admit(token, "abc", "/pulp/content/d/f")


@pytest.mark.parametrize(
    "listen, url",
    [
        (Listen("10.1.2.3", 24816), "http://10.1.2.3:24816"),
        (Listen("fd00::5", 24816), "http://[fd00::5]:24816"),
        (Listen("0.0.0.0", 24816), None),  # which of its addresses? PULP_CONTENT_PEER_URL says
        (Listen("::", 24816), None),
        (Listen(path="/run/pulp-content.sock"), None),
        (Listen("10.1.2.3", 24816, fd=3), None),
    ],
)
def test_serve_says_where_other_hosts_reach_it_when_its_address_is_one(listen, url):
    assert peer_url_of(listen) == url
