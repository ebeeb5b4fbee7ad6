"""The merged service over real HTTP: stored and lazy content, headers, ranges, listings."""

from __future__ import annotations

import base64
import contextlib
import hashlib

import pytest

from pulp_content.fixtures.remote import FileSpec, generate
from pulp_content.service.storage import open_storage
from tests.helpers import eventually

pytestmark = pytest.mark.functional

FILES = [
    FileSpec("a.iso", 1024 * 1024, 1),
    FileSpec("dir/b.xml.gz", 5000, 2),
    FileSpec("dir/sub/c.txt", 10, 3),
    FileSpec("index-less/d.bin", 0, 4),
]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def artifact_count() -> int:
    from pulp_content.service.models import Artifact

    return Artifact.objects.count()


def linked(relative_path: str) -> bool:
    from pulp_content.service.models import ContentArtifact

    return ContentArtifact.objects.filter(
        relative_path=relative_path, artifact__isnull=False
    ).exists()


def test_on_demand_is_downloaded_once_then_served_from_storage(scenario, client):
    base = scenario.publish("lazy", FILES, "on_demand")
    expected = scenario.remote.content("lazy", "a.iso")
    for _ in range(3):
        response = client.get(base + "a.iso")
        assert response.status == 200
        assert response.body == expected
        assert response.complete
    assert scenario.remote.count("/lazy/a.iso") == 1
    # Saved once its bytes are on the disk (fsync'ed), which the client does not wait for.
    assert eventually(lambda: linked("a.iso"))
    assert open_storage(scenario.settings).partials() == []
    stored = open_storage(scenario.settings).path_of(
        f"artifact/{sha(expected)[:2]}/{sha(expected)[2:]}"
    )
    assert stored.read_bytes() == expected


@pytest.mark.parametrize("policy", ["on_demand", "streamed"])
def test_every_lazy_file_including_empty_ones(scenario, client, policy):
    base = scenario.publish("every", FILES, policy)
    for spec in FILES:
        response = client.get(base + spec.relative_path)
        assert response.status == 200 and response.complete
        assert response.body == spec.content()


def test_streamed_fetches_every_time_and_keeps_nothing(scenario, client):
    base = scenario.publish("streamy", FILES, "streamed")
    expected = scenario.remote.content("streamy", "dir/sub/c.txt")
    for _ in range(2):
        response = client.get(base + "dir/sub/c.txt")
        assert response.body == expected
    assert scenario.remote.count("/streamy/dir/sub/c.txt") == 2
    assert not linked("dir/sub/c.txt")
    assert artifact_count() == 1  # the generated PULP_MANIFEST only
    assert open_storage(scenario.settings).partials() == []


def test_immediate_never_touches_the_upstream_at_serve_time(scenario, client):
    base = scenario.publish("eager", FILES, "immediate")
    scenario.remote.reset()
    for spec in FILES:
        response = client.get(base + spec.relative_path)
        assert response.body == spec.content()
    assert sum(scenario.remote.requests.values()) == 0


def test_stored_headers_conditionals_and_head(scenario, client):
    base = scenario.publish("hdrs", FILES, "immediate")
    data = scenario.remote.content("hdrs", "dir/b.xml.gz")
    response = client.get(base + "dir/b.xml.gz")
    assert response.headers["Content-Type"] == "application/gzip"
    assert "Content-Encoding" not in response.headers
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["ETag"] == f'"{sha(data)}"'
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    assert response.headers["Accept-Ranges"] == "bytes"
    modified = response.headers["Last-Modified"]
    assert response.body == data

    again = client.get(base + "dir/b.xml.gz", headers={"If-None-Match": f'"{sha(data)}"'})
    assert again.status == 304
    assert again.body == b""
    since = client.get(base + "dir/b.xml.gz", headers={"If-Modified-Since": modified})
    assert since.status == 304
    other = client.get(base + "dir/b.xml.gz", headers={"If-None-Match": '"other"'})
    assert other.status == 200

    head = client.head(base + "dir/b.xml.gz")
    assert head.status == 200
    assert head.headers["Content-Length"] == str(len(data))
    assert head.body == b""


@pytest.mark.parametrize("policy", ["immediate", "on_demand", "streamed"])
@pytest.mark.parametrize(
    ("header", "status", "piece"),
    [
        ("bytes=0-0", 206, slice(0, 1)),
        (f"bytes={1024 * 1024 - 1}-", 206, slice(-1, None)),
        ("bytes=-100", 206, slice(-100, None)),
        ("bytes=1000-300000", 206, slice(1000, 300001)),
    ],
)
def test_ranges(scenario, client, policy, header, status, piece):
    base = scenario.publish("ranges", FILES, policy)
    data = scenario.remote.content("ranges", "a.iso")
    response = client.get(base + "a.iso", headers={"Range": header})
    assert response.status == status
    body = response.body
    assert body == data[piece]
    start = piece.start if piece.start >= 0 else len(data) + piece.start
    assert response.headers["Content-Range"] == f"bytes {start}-{start + len(body) - 1}/{len(data)}"
    if policy == "on_demand":
        # The range was answered and the whole artifact still saved once.
        assert eventually(lambda: linked("a.iso"))


@pytest.mark.parametrize("policy", ["immediate", "on_demand"])
def test_unsatisfiable_range(scenario, client, policy):
    base = scenario.publish("bad-range", FILES, policy)
    before = scenario.remote.count("/bad-range/a.iso")
    response = client.get(base + "a.iso", headers={"Range": f"bytes={1024 * 1024}-"})
    assert response.status == 416
    assert response.headers["Content-Range"] == f"bytes */{1024 * 1024}"
    assert scenario.remote.count("/bad-range/a.iso") == before


def test_head_on_lazy_content_does_not_touch_the_upstream(scenario, client):
    base = scenario.publish("lazyhead", FILES, "on_demand")
    data = scenario.remote.content("lazyhead", "a.iso")
    response = client.head(base + "a.iso")
    assert response.status == 200
    assert response.headers["Content-Length"] == str(len(data))
    assert response.headers["ETag"] == f'"{sha(data)}"'
    assert scenario.remote.count("/lazyhead/a.iso") == 0
    assert scenario.remote.count("/lazyhead/a.iso", "HEAD") == 0


def test_lazy_response_has_length_and_digest_up_front(scenario, client):
    base = scenario.publish("lazyhdr", FILES, "on_demand")
    data = scenario.remote.content("lazyhdr", "a.iso")
    response = client.get(base + "a.iso")
    assert response.headers["Content-Length"] == str(len(data))
    assert "Transfer-Encoding" not in response.headers
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert response.headers["Repr-Digest"] == f"sha-256=:{digest}:"
    assert response.complete


def test_published_manifest_is_served(scenario, client):
    base = scenario.publish("man", FILES, "on_demand")
    response = client.get(base + "PULP_MANIFEST")
    lines = (response.body.decode()).splitlines()
    assert sorted(line.split(",")[0] for line in lines) == sorted(f.relative_path for f in FILES)


def test_listings_and_trailing_slash_redirect(scenario, client):
    base = scenario.publish("listed", FILES, "on_demand")
    root = client.get(base)
    text = root.body.decode()
    assert root.status == 200
    for name in ('href="a.iso"', 'href="dir/"', 'href="index-less/"', 'href="PULP_MANIFEST"'):
        assert name in text
    nested = client.get(base + "dir/")
    nested_text = nested.body.decode()
    assert 'href="sub/"' in nested_text and 'href="b.xml.gz"' in nested_text
    assert ">5000<" in nested_text
    redirect = client.get(base + "dir")
    assert redirect.status == 301
    assert redirect.headers["Location"] == base + "dir/"
    bare = client.get(base.rstrip("/"))
    assert bare.status == 301
    assert bare.headers["Location"] == base
    missing = client.get(base + "nope/")
    assert missing.status == 404
    file_as_dir = client.get(base + "a.iso/")
    assert file_as_dir.status == 404


def test_index_html_is_served_for_its_directory(scenario, client):
    files = [FileSpec("site/index.html", 30, 9), FileSpec("site/x.txt", 3, 9)]
    base = scenario.publish("site", files, "immediate")
    response = client.get(base + "site/")
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.body == files[0].content()


def test_empty_repository_lists_an_empty_root(scenario, client):
    base = scenario.publish("empty", [], "on_demand")
    response = client.get(base)
    assert response.status == 200
    assert 'href="PULP_MANIFEST"' in response.body.decode()


def test_base_path_matching(scenario, client):
    scenario.publish("one", generate("one", 1), "immediate", base_path="deep/one")
    scenario.publish("two", generate("two", 1), "immediate", base_path="deep/er/two")
    root = client.get("/pulp/content/")
    assert 'href="deep/"' in root.body.decode()
    partial = client.get("/pulp/content/deep/")
    text = partial.body.decode()
    assert 'href="one/"' in text and 'href="er/"' in text
    longest = client.get("/pulp/content/deep/er/two/two-0.bin")
    assert longest.status == 200
    assert (client.get("/pulp/content/nowhere/x")).status == 404
    assert (client.get("/pulp/content/dee/")).status == 404
    bare = client.get("/pulp/content")
    assert bare.status == 301


@pytest.mark.parametrize(
    "path",
    [
        "trav/%2e%2e/%2e%2e/etc/passwd",
        "trav/..%2fsecret",
        "trav/a%00b",
        "trav/%2E%2E",
        "trav/dir%2fsub/c.txt",
        "trav/" + "a/" * 2000,
    ],
)
def test_hostile_paths_are_refused(scenario, client, path):
    scenario.publish("trav", FILES, "on_demand")
    response = client.get("/pulp/content/" + path)
    assert response.status in (400, 404)
    assert scenario.remote.count("/trav/dir/sub/c.txt") == 0


# Statements per request, first (cold) and repeated (warm: from the resolution cache),
# every one the process sends: what the PostgreSQL server log shows. Cold: the
# distribution, then the file (one UNION); a lazy artifact adds its remote artifacts,
# then the save: BEGIN, INSERT artifact, UPDATE content artifact, COMMIT (PostgreSQL
# also the download claim's advisory lock and unlock, on a connection of its own). A
# streamed download takes that claim on every request (its partial file is its own):
# warm, it is all that remains.
BUDGET = {
    "stored": ({"sqlite": 2, "postgresql": 2}, {"sqlite": 0, "postgresql": 0}),
    "missing": ({"sqlite": 2, "postgresql": 2}, {"sqlite": 0, "postgresql": 0}),
    "no_distribution": ({"sqlite": 2, "postgresql": 2}, {"sqlite": 0, "postgresql": 0}),
    "listing": ({"sqlite": 2, "postgresql": 2}, {"sqlite": 0, "postgresql": 0}),
    "streamed": ({"sqlite": 3, "postgresql": 5}, {"sqlite": 0, "postgresql": 2}),
    "lazy": ({"sqlite": 7, "postgresql": 9}, None),  # repeated, it is a stored artifact
}


@pytest.mark.parametrize("kind", BUDGET)
def test_query_budget(scenario, inprocess_client, kind):
    """Counted in the process; on PostgreSQL the same as the server's own log shows, and
    warm over 1,000 requests."""
    from django.db import connection

    from pulp_content.service.keys import LOCATOR
    from tests.functional.serverlog import server_log

    cold, warm = BUDGET[kind]
    scenario.publish("eager", FILES[:2], "immediate")
    # Other bytes than "eager": the same bytes would be the same (stored) artifact.
    scenario.publish("budget", [FileSpec("a.iso", 1000, 99)], "on_demand")
    scenario.publish("streamy", [FileSpec("s.iso", 1000, 98)], "streamed")
    path = {
        "stored": "/pulp/content/eager/a.iso",
        "missing": "/pulp/content/eager/none.iso",
        "no_distribution": "/pulp/content/nothing/here.iso",
        "listing": "/pulp/content/eager/dir/",
        "streamed": "/pulp/content/streamy/s.iso",
        "lazy": "/pulp/content/budget/a.iso",
    }[kind]
    cache = inprocess_client.server.app[LOCATOR].cache
    assert eventually(lambda: cache.live)
    with contextlib.ExitStack() as stack:
        log = None
        if connection.vendor == "postgresql":
            # Before the service's request connections open: their sessions log.
            log = stack.enter_context(server_log(connection.settings_dict["NAME"]))
        response = inprocess_client.get(path)
        assert response.complete
        assert inprocess_client.last_queries() == cold[connection.vendor]

        def seen() -> list[str]:
            assert log is not None
            return log.statements(exclude_application="pulp-content invalidation")

        if log is not None:
            assert len(seen()) == cold["postgresql"], seen()
        if warm is None:
            return

        def repeated_costs(statements: int) -> bool:
            again = inprocess_client.get(path)
            assert again.status == response.status and again.body == response.body
            return inprocess_client.last_queries() == statements

        # The answer is kept unless a change committed while it was computed.
        assert eventually(lambda: repeated_costs(warm[connection.vendor]))
        if log is None:
            return
        log.mark()
        repeats = 1000
        for _ in range(repeats):
            again = inprocess_client.get(path)
            assert again.status == response.status and again.complete
        expected = repeats * warm["postgresql"]
        assert eventually(lambda: len(seen()) >= expected)
        assert len(seen()) == expected, seen()[:10]
