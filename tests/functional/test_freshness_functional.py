"""Pull-through freshness: mutable files revalidated upstream once older than their max
age, stale copies served while the upstream is down, and the caching headers.

The fixture remote is the upstream: a file's bytes change at the same path between
requests (`put_file`), a conditional GET naming the current ETag is a 304, and every
request is counted by path."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from concurrent.futures import ThreadPoolExecutor

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import Fault, FileSpec, FixtureRemote
from pulp_content.service.keys import LOCATOR
from pulp_content.service.types import LocalArtifact, RemoteSource
from tests.functional.conftest import Client, ServiceProcess, ServiceServer
from tests.helpers import eventually

pytestmark = pytest.mark.functional

BASE = "/pulp/content/fr/"
RELEASE = FileSpec.literal("InRelease", b"Suite: stable\nVersion: 1\n")
RELEASE_2 = FileSpec.literal("InRelease", b"Suite: stable\nVersion: 2 (a new release)\n")
DEB = FileSpec("pool/hello_1.0_all.deb", 5000, 7)
UPSTREAM_RELEASE = "/fr/InRelease"


def remote_artifact(url_end: str):
    """The remote artifact at this URL, once its save committed (the last byte reaches
    the client before the rows do)."""
    from pulp_content.service.models import RemoteArtifact

    saved = RemoteArtifact.objects.filter(url__endswith=url_end, validated_at__isnull=False)
    assert eventually(saved.exists)
    return saved.get()


def generation() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT value FROM pulp_content_generation WHERE id = 1")
        return int(cursor.fetchone()[0])


@pytest.fixture
def client(inprocess_client: Client) -> Client:
    """A service in this process: tests that move time in the database wait until its
    resolution cache has heard of the change (`age_copy`)."""
    return inprocess_client


@pytest.fixture
def fresh(scenario):
    """Distribution `fr` pulls through from /fr/ of the fixture remote."""
    scenario.remote.add_repository("fr", [RELEASE, DEB])
    url = scenario.remote.base_url + "/fr/"
    scenario.cli("remote", "create", "fr", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "fr", "--base-path", "fr", "--remote", "fr")
    return scenario


def test_freshness_settings_are_kept_and_shown(fresh):
    fresh.cli(
        "remote", "update", "fr", "--mutable", "latest/*", "--mutable", "VERSION",
        "--metadata-max-age", "60", "--max-stale", "3600",
    )  # fmt: skip
    shown = json.loads(fresh.cli("remote", "show", "fr", "--json"))
    assert shown["mutable"] == ["latest/*", "VERSION"]
    assert shown["metadata_max_age"] == 60 and shown["max_stale"] == 3600
    fresh.cli("remote", "update", "fr", "--metadata-max-age", "5")  # the others stay
    shown = json.loads(fresh.cli("remote", "show", "fr", "--json"))
    assert shown["mutable"] == ["latest/*", "VERSION"] and shown["metadata_max_age"] == 5
    fresh.cli("remote", "update", "fr", "--mutable", "")
    assert json.loads(fresh.cli("remote", "show", "fr", "--json"))["mutable"] == []


def test_a_first_fetch_keeps_what_the_upstream_said(fresh, client):
    fresh.remote.extra_headers["fr/InRelease"] = {"Cache-Control": "public, max-age=7"}
    response = client.get(BASE + "InRelease")
    assert response.status == 200 and response.body == RELEASE.content()
    kept = remote_artifact("/fr/InRelease")
    assert kept.etag == f'"{fresh.remote.repositories["fr"].digests["InRelease"]}"'
    assert kept.upstream_max_age == 7 and kept.validated_at is not None
    resolved = json.loads(fresh.cli("resolve", BASE + "InRelease", "--json"))
    assert resolved["pulled"]["max_age"] == 7  # tighter than the remote's 300
    assert resolved["pulled"]["fresh"] is True and resolved["pulled"]["mutable"] is True


def test_the_change_triggers_survive_the_migration(fresh):
    """The new columns were added in place: a remote's change still bumps the generation
    every worker's cache follows (on SQLite a rebuilt table would have lost them)."""
    before = generation()
    fresh.cli("remote", "update", "fr", "--metadata-max-age", "1")
    assert generation() > before


def cached(client: Client, path: str) -> object:
    """What a worker in this process keeps for `path` in its resolution cache (None:
    nothing; a worker in another process: nothing known)."""
    if client.server.app is None:
        return None
    found = client.server.app[LOCATOR].cache.get(path)
    return None if found is None else found.resolution


def fetched(relative: str, *clients: Client) -> None:
    """The copy at `relative` saved, and no worker's cache still holding what the path
    led to before (the download): the cache hears of a change milliseconds after it."""
    remote_artifact("/fr/" + relative)
    path = BASE + relative
    assert eventually(lambda: not any(isinstance(cached(c, path), RemoteSource) for c in clients))


def age_copy(relative: str, seconds: float, *clients: Client) -> None:
    """Move the last confirmation of the copy at `relative` `seconds` into the past: time
    passing, without waiting for it; then wait until no worker's cache holds the copy
    as it was before."""
    from pulp_content.service.models import RemoteArtifact

    fetched(relative, *clients)
    then = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds)
    RemoteArtifact.objects.filter(url__endswith="/fr/" + relative).update(validated_at=then)
    path = BASE + relative

    def moved(client: Client) -> bool:
        copy = cached(client, path)
        return not isinstance(copy, LocalArtifact) or copy.pulled.validated_at <= then

    assert eventually(lambda: all(moved(c) for c in clients))


def partials(settings) -> list:
    tmp = settings.storage_root / "tmp"
    return sorted(tmp.glob("*.partial")) if tmp.exists() else []


def stored_copies() -> int:
    from pulp_content.service.models import Artifact

    return Artifact.objects.count()


def test_a_fresh_copy_is_served_without_asking_the_upstream(fresh, client):
    assert client.get(BASE + "InRelease").body == RELEASE.content()
    fetched("InRelease", client)
    fresh.remote.put_file("fr", RELEASE_2)  # a new release upstream, within max age
    assert client.get(BASE + "InRelease").body == RELEASE.content()
    assert fresh.remote.count(UPSTREAM_RELEASE) == 1


def test_a_stale_copy_the_upstream_confirms_is_served_and_its_age_resets(fresh, client):
    assert client.get(BASE + "InRelease").status == 200
    age_copy("InRelease", 301, client)
    again = client.get(BASE + "InRelease")
    assert again.status == 200 and again.body == RELEASE.content()
    assert fresh.remote.count(UPSTREAM_RELEASE) == 2
    assert fresh.remote.not_modified[UPSTREAM_RELEASE] == 1  # asked with If-None-Match
    sent = fresh.remote.last_headers[UPSTREAM_RELEASE]
    assert sent["If-None-Match"] == f'"{fresh.remote.repositories["fr"].digests["InRelease"]}"'
    assert client.get(BASE + "InRelease").status == 200  # fresh again: not asked
    assert fresh.remote.count(UPSTREAM_RELEASE) == 2
    assert stored_copies() == 1


def test_new_bytes_upstream_become_the_file_after_its_max_age(fresh, client):
    assert client.get(BASE + "InRelease").body == RELEASE.content()
    fresh.remote.put_file("fr", RELEASE_2)
    assert client.get(BASE + "InRelease").body == RELEASE.content()  # within max age
    age_copy("InRelease", 301, client)
    renewed = client.get(BASE + "InRelease")
    assert renewed.status == 200 and renewed.body == RELEASE_2.content()
    assert fresh.remote.count(UPSTREAM_RELEASE) == 2
    # A new artifact; the old one stays for whatever references it.
    assert stored_copies() == 2
    assert client.get(BASE + "InRelease").body == RELEASE_2.content()
    assert fresh.remote.count(UPSTREAM_RELEASE) == 2


def test_an_immutable_file_is_never_revalidated(fresh, client):
    path = BASE + DEB.relative_path
    assert client.get(path).body == DEB.content()
    age_copy(DEB.relative_path, 10 * 86_400, client)
    assert client.get(path).body == DEB.content()
    assert fresh.remote.count("/fr/" + DEB.relative_path) == 1


def test_the_remote_max_age_is_set_per_remote(fresh, client):
    fresh.cli("remote", "update", "fr", "--metadata-max-age", "0")
    assert client.get(BASE + "InRelease").status == 200
    fetched("InRelease", client)
    fresh.remote.put_file("fr", RELEASE_2)
    assert client.get(BASE + "InRelease").body == RELEASE_2.content()  # at once


def test_a_remote_makes_more_files_mutable(fresh, client):
    fresh.cli("remote", "update", "fr", "--mutable", "pool/*.deb")
    path = BASE + DEB.relative_path
    assert client.get(path).status == 200
    age_copy(DEB.relative_path, 301, client)
    assert client.get(path).status == 200
    assert fresh.remote.not_modified["/fr/" + DEB.relative_path] == 1


def test_concurrent_requests_of_a_stale_file_revalidate_once(fresh, client, second_worker):
    """N clients of two workers ask for a stale copy while the upstream is slow: one
    conditional request upstream; the others get the copy there is."""
    assert client.get(BASE + "InRelease").status == 200
    age_copy("InRelease", 301, client, second_worker)
    fresh.remote.set_fault("fr/InRelease", Fault("latency", delay=0.5))
    servers = [client, second_worker] * 6
    with ThreadPoolExecutor(len(servers)) as pool:
        replies = list(pool.map(lambda c: c.get(BASE + "InRelease"), servers))
    assert [r.status for r in replies] == [200] * len(servers)
    assert all(r.body == RELEASE.content() for r in replies)
    assert fresh.remote.count(UPSTREAM_RELEASE) == 2  # the first fetch, one revalidation
    assert fresh.remote.not_modified[UPSTREAM_RELEASE] == 1


# -- stale-if-error and offline ---------------------------------------------------------------
@pytest.fixture
def no_cooldown(db):
    """A service that asks the upstream again at the next request after a failure."""
    server = ServiceServer(dataclasses.replace(db, failure_cooldown=0))
    with Background(server):
        yield Client(server)


def test_a_stale_copy_is_served_while_the_upstream_fails(fresh, no_cooldown, caplog):
    client = no_cooldown
    assert client.get(BASE + "InRelease").status == 200
    age_copy("InRelease", 301, client)
    fresh.remote.set_fault("fr/InRelease", Fault("status", status=503))
    with caplog.at_level("WARNING", logger="pulp_content.service.revalidate"):
        served = client.get(BASE + "InRelease")
    assert served.status == 200 and served.body == RELEASE.content()
    assert int(served.headers["Age"]) >= 301
    # 301 s and the time the remote's retries of the 503 took.
    confirmed = re.search(r"serving the copy confirmed (\d+) s ago", caplog.text)
    assert confirmed is not None and 301 <= int(confirmed[1]) <= int(served.headers["Age"])
    assert "answered 503" in caplog.text
    # Not confirmed: the next request asks again, and gets the upstream's news.
    fresh.remote.set_fault("fr/InRelease", None)
    fresh.remote.put_file("fr", RELEASE_2)
    assert client.get(BASE + "InRelease").body == RELEASE_2.content()


def test_past_its_max_stale_a_copy_is_not_served_when_the_upstream_fails(fresh, client):
    fresh.cli("remote", "update", "fr", "--max-stale", "100")
    assert client.get(BASE + "InRelease").status == 200
    age_copy("InRelease", 300 + 101, client)
    fresh.remote.set_fault("fr/InRelease", Fault("status", status=502))
    assert client.get(BASE + "InRelease").status == 502


def test_a_file_the_upstream_no_longer_has_is_a_404(fresh, client):
    assert client.get(BASE + "InRelease").status == 200
    age_copy("InRelease", 301, client)
    fresh.remote.set_fault("fr/InRelease", Fault("status", status=404))
    assert client.get(BASE + "InRelease").status == 404  # the upstream's answer, not an error


def test_with_the_upstream_gone_cached_copies_are_served_and_the_rest_is_a_502(scenario, client):
    """A fixture remote of this test's own, stopped half-way."""
    gone = FixtureRemote()
    with Background(gone):
        gone.add_repository("fr", [RELEASE, DEB, FileSpec("never.bin", 10, 9)])
        url = gone.base_url + "/fr/"
        scenario.cli(
            "remote", "create", "fr", "--url", url, "--policy", "on_demand",
            "--connect-timeout", "2",
        )  # fmt: skip
        scenario.cli("distribution", "create", "fr", "--base-path", "fr", "--remote", "fr")
        assert client.get(BASE + "InRelease").status == 200
        assert client.get(BASE + DEB.relative_path).status == 200
        fetched(DEB.relative_path, client)
    age_copy("InRelease", 301, client)
    release = client.get(BASE + "InRelease")
    assert release.status == 200 and release.body == RELEASE.content()
    assert int(release.headers["Age"]) >= 301
    deb = client.get(BASE + DEB.relative_path)
    assert deb.status == 200 and deb.body == DEB.content() and "Age" in deb.headers
    assert client.get(BASE + "never.bin").status == 502  # never fetched: nothing to serve


def test_serve_offline_never_asks_the_upstream(fresh, db):
    with ServiceProcess(db, 1, ("--offline",)) as offline:
        client = Client(offline)
        assert client.get(BASE + "InRelease").status == 504  # never fetched
    assert fresh.remote.requests == {}
    with ServiceProcess(db, 1) as online:
        assert Client(online).get(BASE + "InRelease").status == 200
    age_copy("InRelease", 10 * 86_400)  # stale, and past max stale too
    with ServiceProcess(db, 1, ("--offline",)) as offline:
        served = Client(offline).get(BASE + "InRelease")
        head = Client(offline).head(BASE + "never.bin")
    assert served.status == 200 and served.body == RELEASE.content()
    assert int(served.headers["Age"]) >= 10 * 86_400
    assert head.status == 504
    assert fresh.remote.count(UPSTREAM_RELEASE) == 1


# -- caching headers ------------------------------------------------------------------------
PACKAGE = FileSpec("pkg.bin", 3000, 11)


def test_a_publication_s_files_are_long_lived_and_its_metadata_short(scenario, client):
    base = scenario.publish("pub", [PACKAGE], "immediate")
    package = client.get(base + "pkg.bin")
    assert package.headers["Cache-Control"] == "public, max-age=86400"
    assert "Age" not in package.headers  # stored here, not a copy of an upstream's
    manifest = client.get(base + "PULP_MANIFEST")
    assert manifest.status == 200 and manifest.headers["Cache-Control"] == "public, max-age=60"
    assert client.get(base).headers["Cache-Control"] == "public, max-age=60"  # a listing
    etag = package.headers["ETag"]
    revalidated = client.get(base + "pkg.bin", {"If-None-Match": etag})
    assert revalidated.status == 304
    assert revalidated.headers["Cache-Control"] == "public, max-age=86400"
    missing = client.get(base + "nothing.bin")
    assert missing.status == 404 and "Cache-Control" not in missing.headers


def test_a_guarded_distribution_s_answers_are_private(scenario, client):
    base = scenario.publish("pub", [PACKAGE], "on_demand")
    scenario.cli("guard", "create", "token", "--kind", "header", "--header", "X-Token",
                 "--value", "abc")  # fmt: skip
    scenario.cli("distribution", "update", "pub", "--guard", "token")
    lazy = client.get(base + "pkg.bin", {"X-Token": "abc"})  # streamed from the upstream
    assert lazy.status == 200 and lazy.headers["Cache-Control"] == "private, max-age=86400"
    assert lazy.headers["Vary"] == "X-Token"  # the header the guard reads
    refused = client.get(base + "pkg.bin")
    assert refused.status == 403 and "Cache-Control" not in refused.headers


def test_pull_through_copies_say_how_long_they_stay_fresh(fresh, client):
    fresh.cli("remote", "update", "fr", "--metadata-max-age", "120")
    first = client.get(BASE + "InRelease")  # streamed from the upstream
    assert first.headers["Cache-Control"] == "public, max-age=120"
    age_copy("InRelease", 30, client)
    copy = client.get(BASE + "InRelease")
    assert copy.headers["Cache-Control"] == "public, max-age=120"
    assert 30 <= int(copy.headers["Age"]) < 120  # a downstream cache has ~90 s left
    deb = client.get(BASE + DEB.relative_path)
    assert deb.headers["Cache-Control"] == "public, max-age=86400"


def test_a_replaced_copy_never_looks_unmodified_to_if_modified_since(fresh, client):
    """Found with apt, which revalidates with If-Modified-Since only: new bytes fetched
    within the same second as the old ones answered it 304 while the copy's
    Last-Modified was the time it was fetched. A mutable copy now carries the
    upstream's Last-Modified, or none (its ETag is exact)."""
    first = client.get(BASE + "InRelease")
    assert "Last-Modified" not in first.headers  # the upstream gave none
    fetched("InRelease", client)
    fresh.remote.put_file("fr", RELEASE_2)
    age_copy("InRelease", 301, client)
    again = client.get(BASE + "InRelease", {"If-Modified-Since": first.headers["Date"]})
    assert again.status == 200 and again.body == RELEASE_2.content()


def test_a_mutable_copy_passes_the_upstream_last_modified_on(fresh, client):
    stamp = "Wed, 01 Jul 2026 10:00:00 GMT"
    fresh.remote.extra_headers["fr/InRelease"] = {"Last-Modified": stamp}
    assert client.get(BASE + "InRelease").status == 200
    fetched("InRelease", client)
    copy = client.get(BASE + "InRelease")
    assert copy.headers["Last-Modified"] == stamp
    assert client.get(BASE + "InRelease", {"If-Modified-Since": stamp}).status == 304


def test_a_directory_page_is_pulled_through_as_html_and_the_top_has_no_listing(fresh, client):
    fresh.remote.put_file("fr", FileSpec.literal("simple/pkg/index.html", b"<a>pkg</a>\n"))
    page = client.get(BASE + "simple/pkg/")
    assert page.status == 200 and page.body == b"<a>pkg</a>\n"
    assert page.headers["Content-Type"].startswith("text/html")
    assert fresh.remote.count("/fr/simple/pkg/") == 1  # the directory's URL, as asked
    fetched("simple/pkg/", client)
    copy = client.get(BASE + "simple/pkg/")
    assert copy.headers["Content-Type"].startswith("text/html") and "Age" in copy.headers
    assert client.get(BASE).status == 404
    assert client.get(BASE + "%2e%2e/").status == 404  # still never above the remote's URL


def test_new_bytes_in_a_suite_make_its_other_metadata_due(fresh, client):
    """A Release and its Packages drift apart in age (each 304 resets one). When the
    Release comes back new, the Packages copy of the same suite, though within its max
    age, is revalidated at its next request: apt never pairs a new Release with an old
    Packages (a hash mismatch). A package of the suite is not touched."""
    suite = [
        FileSpec.literal("dists/stable/Release", b"Release 1\n"),
        FileSpec.literal("dists/stable/main/binary-all/Packages", b"Packages 1\n"),
        FileSpec.literal("dists/other/Release", b"Other 1\n"),
    ]
    for spec in suite:
        fresh.remote.put_file("fr", spec)
        assert client.get(BASE + spec.relative_path).status == 200
        fetched(spec.relative_path, client)
    for spec in suite:
        fresh.remote.put_file("fr", FileSpec.literal(spec.relative_path, spec.data[:-2] + b"2\n"))
    age_copy("dists/stable/Release", 301, client)
    assert client.get(BASE + "dists/stable/Release").body == b"Release 2\n"
    path = BASE + "dists/stable/main/binary-all/Packages"

    def due() -> bool:  # the cache has heard of it (milliseconds after the change)
        copy = cached(client, path)
        return not isinstance(copy, LocalArtifact) or copy.pulled.max_age == 0

    assert eventually(due)
    packages = client.get(path)
    assert packages.body == b"Packages 2\n"  # due with its Release, not 300 s later
    assert client.get(BASE + "dists/other/Release").body == b"Other 1\n"  # another suite
    assert client.get(BASE + DEB.relative_path).status == 200
    assert fresh.remote.count("/fr/dists/stable/main/binary-all/Packages") == 2


def test_new_bytes_over_the_remote_max_size_are_refused_and_not_kept(fresh, client):
    fresh.cli("remote", "update", "fr", "--max-size", "1K")
    assert client.get(BASE + "InRelease").body == RELEASE.content()
    fresh.remote.put_file("fr", FileSpec("InRelease", 5000, 3))
    age_copy("InRelease", 301, client)
    refused = client.get(BASE + "InRelease")
    assert refused.status == 502 and b"max size" in refused.body
    assert stored_copies() == 1  # the old copy only
    assert partials(fresh.settings) == []
