"""Request paths as real clients send them: dot and empty segments, names with '?', '#'
or '%' in them, and absurdly deep paths."""

from __future__ import annotations

import subprocess

import pytest

from pulp_content.fixtures.remote import FileSpec
from tests.helpers import need_tool

pytestmark = pytest.mark.functional

QUESTION = FileSpec("q?dir/x.bin", 1500, 1)
HASH = FileSpec("h#dir/y.bin", 1600, 2)
PERCENT = FileSpec("50%dir/z.bin", 1700, 3)
PLAIN = FileSpec("dir/p.bin", 1800, 4)


@pytest.fixture
def odd(scenario, client):
    return scenario.publish("odd", [QUESTION, HASH, PERCENT, PLAIN], "on_demand"), client


@pytest.mark.parametrize(
    ("directory", "spec"),
    [("q%3Fdir", QUESTION), ("h%23dir", HASH), ("50%25dir", PERCENT)],
)
def test_a_directory_redirects_to_its_encoded_path(odd, directory, spec):
    base, client = odd
    moved = client.get(base + directory)
    assert moved.status == 301
    assert moved.headers["Location"] == f"{base}{directory}/"
    listing = client.get(moved.headers["Location"])
    assert listing.status == 200 and spec.relative_path.split("/")[1].encode() in listing.body
    lazy = client.get(moved.headers["Location"] + spec.relative_path.split("/")[1])
    assert lazy.status == 200 and lazy.body == spec.content()


def test_curl_follows_the_redirect_of_a_directory_with_a_question_mark(odd, tmp_path):
    base, client = odd
    url = f"http://127.0.0.1:{client.server.port}{base}q%3Fdir"
    done = subprocess.run(
        [need_tool("curl"), "-sSfL", "-o", str(tmp_path / "index.html"), url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert 'href="x.bin"' in (tmp_path / "index.html").read_text()


@pytest.mark.parametrize(
    "path", ["./dir/p.bin", "dir/./p.bin", "././dir/./p.bin", "dir//p.bin", ".//dir///p.bin"]
)
def test_dot_and_empty_segments_are_removed(odd, path):
    base, client = odd
    response = client.get(base + path)
    assert response.status == 200 and response.body == PLAIN.content()


def test_a_dot_segment_at_the_end_names_the_directory(odd):
    base, client = odd
    listing = client.get(base + "dir/.")
    assert listing.status == 200 and b'href="p.bin"' in listing.body
    redirected = client.get(base + ".//dir")
    assert redirected.status == 301 and redirected.headers["Location"] == base + "dir/"


@pytest.mark.parametrize("path", ["dir/../dir/p.bin", "../odd/dir/p.bin", "dir/.."])
def test_dot_dot_segments_stay_refused(odd, path):
    base, client = odd
    assert client.get(base + path).status == 404


def test_a_path_of_a_thousand_segments_is_refused_before_the_database(scenario, inprocess_client):
    base = scenario.publish("deep", [PLAIN], "on_demand")
    refused = inprocess_client.get(base + "a/" * 1000 + "p.bin")
    assert refused.status == 404 and b"segments" in refused.body
    assert inprocess_client.last_queries() == 0
    normal = inprocess_client.get(base + "dir/p.bin")
    assert normal.status == 200 and normal.body == PLAIN.content()
