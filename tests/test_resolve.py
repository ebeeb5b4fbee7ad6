"""Resolution without HTTP: `pulp-content resolve` and the resolve() it prints."""

from __future__ import annotations

import hashlib
import json

import pytest

from pulp_content.fixtures.remote import FileSpec

FILES = [FileSpec("a.iso", 2048, 1), FileSpec("dir/b.txt", 10, 2)]


def resolved(scenario, path: str) -> dict:
    return json.loads(scenario.cli("resolve", path, "--json"))


def test_lazy_file(scenario):
    scenario.publish("lazy", FILES, "on_demand")
    doc = resolved(scenario, "/pulp/content/lazy/a.iso")
    sha = hashlib.sha256(FILES[0].content()).hexdigest()
    assert doc == {
        "path": "/pulp/content/lazy/a.iso",
        "distribution": {"name": "lazy", "base_path": "lazy"},
        "source": "publication",
        "relative_path": "a.iso",
        "action": "stream",
        "artifact": None,
        "remote_artifacts": [
            {
                "remote": "lazy",
                "url": scenario.remote.file_url("lazy", "a.iso"),
                "policy": "on_demand",
                "size": 2048,
                "sha256": sha,
            }
        ],
        "queries": 3,
    }


def test_stored_file_from_a_repository_version(scenario):
    scenario.repository("eager", FILES, "immediate")
    scenario.cli(
        "distribution", "create", "eager", "--base-path", "eager/v1", "--version", "eager:1"
    )
    doc = resolved(scenario, "/pulp/content/eager/v1/dir/b.txt")
    sha = hashlib.sha256(FILES[1].content()).hexdigest()
    assert doc["source"] == "repository_version"
    assert doc["action"] == "serve_file"
    assert doc["artifact"] == {
        "sha256": sha,
        "size": 10,
        "storage_path": f"artifact/{sha[:2]}/{sha[2:]}",
    }
    assert doc["queries"] == 2


def test_repository_distribution_follows_the_latest_version(scenario):
    scenario.repository("moving", FILES[:1], "on_demand")
    scenario.cli(
        "distribution", "create", "moving", "--base-path", "moving", "--repository", "moving"
    )
    assert resolved(scenario, "/pulp/content/moving/dir/b.txt")["action"] == "not_found"
    scenario.remote.add_repository("moving", FILES)
    scenario.cli("repository", "sync", "moving")
    assert resolved(scenario, "/pulp/content/moving/dir/b.txt")["action"] == "stream"


@pytest.mark.parametrize(
    ("path", "action", "extra"),
    [
        ("/pulp/content/", "listing", {"entries": ["pub/"]}),
        ("/pulp/content/pub", "redirect", {"location": "/pulp/content/pub/"}),
        ("/pulp/content/pub/dir", "redirect", {"location": "/pulp/content/pub/dir/"}),
        ("/pulp/content/pub/dir/", "listing", {"entries": ["b.txt"]}),
        ("/pulp/content/pub/missing", "not_found", {}),
        ("/pulp/content/other/x", "not_found", {}),
        ("/pulp/content/pub/%2e%2e/x", "not_found", {}),
        ("/elsewhere", "not_found", {}),
    ],
)
def test_actions(scenario, path, action, extra):
    scenario.publish("pub", FILES, "on_demand")
    doc = resolved(scenario, path)
    assert doc["action"] == action
    for key, value in extra.items():
        assert doc[key] == value


def test_plain_output_is_readable(scenario):
    scenario.publish("pub", FILES, "on_demand")
    out = scenario.cli("resolve", "/pulp/content/pub/a.iso")
    assert "action: stream" in out
    # Nested values below their key, indented; no JSON, no Python repr.
    assert "\ndistribution:\n  name: pub\n  base_path: pub\n" in out
    assert "\nremote_artifacts:\n  - remote: pub\n    url: http" in out
    assert "\nartifact: -\n" in out
    assert not any(word in out for word in ("None", "null", "{", "["))


def test_guard_of_an_unknown_kind_refuses(scenario):
    from pulp_content.service.models import ContentGuard, Distribution

    scenario.publish("guarded", FILES, "on_demand")
    guard = ContentGuard.objects.create(name="g", kind="future-kind")
    Distribution.objects.filter(name="guarded").update(content_guard=guard)
    doc = resolved(scenario, "/pulp/content/guarded/a.iso")
    assert doc["action"] == "forbidden"
    assert "not supported" in doc["reason"]
    assert "guarded/" not in resolved(scenario, "/pulp/content/")["entries"]


# Statements per answer: the distribution, then at most one query for the files (and one
# for a lazy file's remote artifacts); a pull-through path asks for its remote and any
# remote artifact at its URL.
STATEMENTS = [
    ("/pulp/content/", "listing", 1),
    ("/pulp/content/nothing/here.iso", "not_found", 2),
    ("/pulp/content/pub", "redirect", 1),
    ("/pulp/content/pub/", "listing", 2),
    ("/pulp/content/pub/dir", "redirect", 2),
    ("/pulp/content/pub/dir/", "listing", 2),
    ("/pulp/content/pub/missing", "not_found", 2),
    ("/pulp/content/pub/a.iso", "stream", 3),
    ("/pulp/content/latest/dir/b.txt", "serve_file", 2),
    ("/pulp/content/latest/", "listing", 2),
    # The guard is checked after the path is located (the service keeps that part in its
    # cache and checks the guard on every request): the file's statement comes first.
    ("/pulp/content/guarded/a.iso", "forbidden", 2),
    ("/pulp/content/pt/sub/f.bin", "stream", 3),
    ("/pulp/content/pt/%252e%252e/f.bin", "not_found", 2),
    # A pull-through directory is the upstream's page for it (a PyPI simple page); the
    # top of a pull-through distribution has no listing.
    ("/pulp/content/pt/sub/", "stream", 3),
    ("/pulp/content/pt/", "not_found", 1),
]


@pytest.fixture
def every_kind(scenario):
    """A publication, a repository's latest version, a guarded and a pull-through
    distribution."""
    scenario.publish("pub", FILES, "on_demand")
    # Other bytes than "pub": the same bytes would be the same (stored) artifact.
    scenario.repository(
        "eager", [FileSpec(f.relative_path, f.size, f.seed + 10) for f in FILES], "immediate"
    )
    scenario.cli(
        "distribution", "create", "latest", "--base-path", "latest", "--repository", "eager"
    )
    scenario.cli("guard", "create", "token", "--kind", "header", "--header", "X-T", "--value", "x")
    scenario.cli(
        "distribution",
        "create",
        "guarded",
        "--base-path",
        "guarded",
        "--repository",
        "eager",
        "--guard",
        "token",
    )
    url = scenario.remote.base_url + "/eager/"
    scenario.cli("remote", "create", "pt", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pt")
    return scenario


@pytest.mark.parametrize(("path", "action", "statements"), STATEMENTS)
def test_statements_per_path(every_kind, path, action, statements):
    doc = resolved(every_kind, path)
    assert (doc["action"], doc["queries"]) == (action, statements)


def test_each_request_runs_on_the_connection_its_thread_kept(scenario):
    """Found profiling a first lazy fetch on SQLite: every resolution opened a new
    connection (the file, then its pragmas) and closed it after, about ten times the cost
    of the statements it ran. A thread now keeps its connection from one request to the
    next, on either database."""
    from django.db import connection

    from pulp_content.service.database import unit_of_work
    from pulp_content.service.resolve import locate

    base = scenario.publish("lazy", FILES, "on_demand")
    run = unit_of_work(locate)
    run(base + "a.iso", scenario.settings.content_prefix, "")
    kept = connection.connection
    run(base + "dir/b.txt", scenario.settings.content_prefix, "")
    assert kept is not None and connection.connection is kept
