"""Pull-through freshness: mutable files revalidated upstream once older than their max
age, stale copies served while the upstream is down, and the caching headers.

The fixture remote is the upstream: a file's bytes change at the same path between
requests (`put_file`), a conditional GET naming the current ETag is a 304, and every
request is counted by path."""

from __future__ import annotations

import json

import pytest

from pulp_content.fixtures.remote import FileSpec
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


def test_the_change_triggers_survive_the_migration(fresh):
    """The new columns were added in place: a remote's change still bumps the generation
    every worker's cache follows (on SQLite a rebuilt table would have lost them)."""
    before = generation()
    fresh.cli("remote", "update", "fr", "--metadata-max-age", "1")
    assert generation() > before
