"""Bad input through the CLI: one clear line on stderr, non-zero exit, nothing changed."""

from __future__ import annotations

import json
import os

import pytest

from pulp_content.cli.main import cli as pulp_content
from pulp_content.fixtures.remote import Fault, FileSpec
from tests.helpers import run_command

FILES = [FileSpec("a.iso", 2048, 1), FileSpec("dir/b.txt", 10, 2)]


def snapshot(settings) -> dict:
    """Every row of every table, and every stored file."""
    from django.apps import apps

    rows = {
        model.__name__: sorted(map(str, model.objects.values_list()))
        for model in apps.get_app_config("service").get_models()
    }
    root = settings.storage_root
    files = sorted(str(p) for p in root.rglob("*") if p.is_file()) if root.exists() else []
    return {"rows": rows, "files": files}


@pytest.fixture
def world(scenario):
    """A remote, a synced repository, a publication and two distributions."""
    scenario.publish("pub", FILES, "on_demand", base_path="a/b")
    scenario.cli("distribution", "create", "solo", "--base-path", "solo", "--repository", "pub")
    return scenario


def refused(world, *args: str) -> str:
    before = snapshot(world.settings)
    result = world.runner.invoke(pulp_content, list(args))
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    assert snapshot(world.settings) == before
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["remote", "show", "nope"], "no remote named 'nope'"),
        (["remote", "update", "nope", "--policy", "streamed"], "no remote named 'nope'"),
        (["remote", "delete", "nope"], "no remote named 'nope'"),
        (["remote", "create", "pub", "--url", "http://x/PULP_MANIFEST"], "already exists"),
        (["remote", "create", "new", "--url", "ftp://x/PULP_MANIFEST"], "invalid URL"),
        (["remote", "create", "new", "--url", "not a url"], "invalid URL"),
        (["remote", "create", "new", "--url", "http://x:99999/"], "bad port"),
        (["remote", "update", "pub", "--url", "http:/broken"], "invalid URL"),
        (["repository", "create", "pub"], "already exists"),
        (["repository", "create", "new", "--remote", "nope"], "no remote named 'nope'"),
        (["repository", "sync", "nope"], "no repository named 'nope'"),
        (["repository", "sync", "pub", "--remote", "nope"], "no remote named 'nope'"),
        (["publication", "create", "--repository", "nope"], "no repository named 'nope'"),
        (["publication", "create", "--repository", "pub", "--version", "9"], "no version 9"),
        (
            ["distribution", "create", "pub", "--base-path", "x", "--repository", "pub"],
            "already exists",
        ),
        (["distribution", "create", "d", "--base-path", "a/b", "--repository", "pub"], "overlaps"),
        (["distribution", "create", "d", "--base-path", "a", "--repository", "pub"], "overlaps"),
        (
            ["distribution", "create", "d", "--base-path", "a/b/c", "--repository", "pub"],
            "overlaps",
        ),
        (
            ["distribution", "create", "d", "--base-path", "/solo/", "--repository", "pub"],
            "overlaps",
        ),
        (
            ["distribution", "create", "d", "--base-path", "x/../y", "--repository", "pub"],
            "'..' segment",
        ),
        (["distribution", "create", "d", "--base-path", "x"], "exactly one of"),
        (
            [
                "distribution",
                "create",
                "d",
                "--base-path",
                "x",
                "--repository",
                "pub",
                "--remote",
                "pub",
            ],
            "exactly one of",
        ),
        (
            ["distribution", "create", "d", "--base-path", "x", "--repository", "nope"],
            "no repository named 'nope'",
        ),
        (
            ["distribution", "create", "d", "--base-path", "x", "--publication", "999999"],
            "no publication with id 999999",
        ),
        (["distribution", "create", "d", "--base-path", "x", "--version", "pub:7"], "no version 7"),
        (
            ["distribution", "create", "d", "--base-path", "x", "--version", "pub"],
            "expected NAME:N",
        ),
        (
            [
                "distribution",
                "create",
                "d",
                "--base-path",
                "x",
                "--repository",
                "pub",
                "--guard",
                "nope",
            ],
            "no content guard named 'nope'",
        ),
        (["distribution", "update", "solo", "--base-path", "a"], "overlaps"),
        (["distribution", "update", "nope", "--base-path", "z"], "no distribution named"),
        (["repository", "delete", "pub"], "still in use"),
    ],
)
def test_bad_input(world, args, message):
    assert message in refused(world, *args)


def test_remote_serving_a_distribution_cannot_be_deleted(world):
    world.cli("distribution", "create", "pt", "--base-path", "pt", "--remote", "pub")
    assert "still in use" in refused(world, "remote", "delete", "pub")


def test_invalid_policy_is_a_usage_error(world):
    before = snapshot(world.settings)
    result = world.runner.invoke(
        pulp_content, ["remote", "create", "new", "--url", "http://x/", "--policy", "lazy"]
    )
    assert result.exit_code == 2
    assert "'lazy' is not one of 'immediate', 'on_demand', 'streamed'" in result.stderr
    assert "Traceback" not in result.output
    assert snapshot(world.settings) == before


def test_unreachable_remote(world):
    world.cli("remote", "create", "gone", "--url", "http://127.0.0.1:9/PULP_MANIFEST")
    assert "cannot connect" in refused(world, "repository", "sync", "pub", "--remote", "gone")


def test_malformed_manifest_line(world):
    world.remote.set_fault("pub", Fault("malformed_manifest"))
    message = refused(world, "repository", "sync", "pub")
    assert f"PULP_MANIFEST line {len(FILES) + 1}" in message


def test_immediate_sync_with_a_corrupt_file_saves_nothing(world):
    world.cli("remote", "update", "pub", "--policy", "immediate")
    world.remote.set_fault("pub/dir/b.txt", Fault("wrong_bytes"))
    assert "sha256 mismatch" in refused(world, "repository", "sync", "pub")


def test_sqlite_home_is_made_by_migrate(tmp_path):
    env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path / "home")}
    env.pop("PULP_CONTENT_DATABASE_URL", None)
    refused = run_command("remote", "list", "--json", env=env)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [
        f"Error: no database at {tmp_path / 'home' / 'db.sqlite3'}: "
        "run `pulp-content migrate` to create it"
    ]
    assert not (tmp_path / "home").exists()
    assert run_command("migrate", env=env).returncode == 0
    result = run_command("remote", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == []


def test_unmigrated_postgres_asks_for_migrate(tmp_path):
    from django.db.migrations.loader import MigrationLoader

    from tests.conftest import throwaway_postgres

    with throwaway_postgres("pulp_content_unmigrated") as url:
        env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_DATABASE_URL": url}
        refused = run_command("remote", "list", env=env)
        assert refused.returncode == 1
        pending = len(MigrationLoader(None).disk_migrations)  # every one of them
        assert refused.stderr.strip().splitlines() == [
            f"Error: the database is not migrated ({pending} pending): run `pulp-content migrate`"
        ]
        assert run_command("migrate", env=env).returncode == 0
        listed = run_command("remote", "list", "--json", env=env)
        assert listed.returncode == 0 and json.loads(listed.stdout) == []


def test_unreachable_database_is_one_line(tmp_path):
    env = {**os.environ, "PULP_CONTENT_DATABASE_URL": "postgres://postgres@127.0.0.1:9/x"}
    result = run_command("remote", "list", env=env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: cannot open the database:")


def test_crud_round_trip(world):
    world.cli("remote", "update", "pub", "--policy", "streamed", "--password", "s3cret")
    shown = json.loads(world.cli("remote", "show", "pub", "--json"))
    assert shown["policy"] == "streamed"
    assert shown["password"] == "***"
    assert [r["name"] for r in json.loads(world.cli("remote", "list", "--json"))] == ["pub"]
    dists = json.loads(world.cli("distribution", "list", "--json"))
    assert [(d["name"], d["base_path"]) for d in dists] == [("pub", "a/b"), ("solo", "solo")]
    world.cli("distribution", "update", "solo", "--base-path", "solo2", "--version", "pub:1")
    assert json.loads(world.cli("distribution", "show", "solo", "--json"))["version"] == "pub:1"
    world.cli("distribution", "delete", "solo")
    assert len(json.loads(world.cli("distribution", "list", "--json"))) == 1


def test_slow_manifest_within_the_read_timeout_syncs(world):
    world.remote.set_fault("pub/PULP_MANIFEST", Fault("latency", delay=0.5))
    world.cli("repository", "sync", "pub")
    assert world.remote.count("/pub/PULP_MANIFEST") == 2


def test_manifest_slower_than_the_read_timeout_is_one_clear_error(world):
    world.cli("remote", "update", "pub", "--sock-read-timeout", "0.5")
    world.remote.set_fault("pub/PULP_MANIFEST", Fault("latency", delay=2.0))
    assert "timed out" in refused(world, "repository", "sync", "pub")


def test_remote_max_size_takes_binary_suffixes(world):
    world.cli("remote", "create", "sized", "--url", "http://x/", "--max-size", "2G")
    assert json.loads(world.cli("remote", "show", "sized", "--json"))["max_size"] == 2 * 1024**3
    world.cli("remote", "update", "sized", "--max-size", "512k")
    assert json.loads(world.cli("remote", "show", "sized", "--json"))["max_size"] == 512 * 1024
    bad = world.runner.invoke(pulp_content, ["remote", "update", "sized", "--max-size", "1.5G"])
    assert bad.exit_code == 2 and "is not a size such as" in bad.output
    assert json.loads(world.cli("remote", "show", "sized", "--json"))["max_size"] == 512 * 1024


def test_remote_retries_default_to_three_and_are_bounded(world):
    world.cli("remote", "create", "patient", "--url", "http://x/")
    assert json.loads(world.cli("remote", "show", "patient", "--json"))["retries"] == 3
    world.cli("remote", "update", "patient", "--retries", "0")
    listed = json.loads(world.cli("remote", "list", "--json"))
    assert next(r for r in listed if r["name"] == "patient")["retries"] == 0
    bad = world.runner.invoke(pulp_content, ["remote", "update", "patient", "--retries", "11"])
    assert bad.exit_code == 2 and "--retries" in bad.output
    assert json.loads(world.cli("remote", "show", "patient", "--json"))["retries"] == 0
