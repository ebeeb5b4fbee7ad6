"""Database URLs are read by dj-database-url: every option reaches libpq (checked on a
real server where one runs), and PULP_CONTENT_DATABASE_CONNECTIONS is a bounded number."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from pulp_content.fixtures.bench import CLI, free_port
from pulp_content.service.config import connect_params, database_settings, load_settings
from pulp_content.service.errors import InvalidInput
from tests.helpers import eventually, run_command


def test_query_options_survive():
    url = "postgres://pulp:p%40ss@db.example:6432/pulp?sslmode=require&sslrootcert=/etc/ca.pem"
    entry = database_settings(url)
    assert (entry["USER"], entry["PASSWORD"], entry["HOST"], entry["PORT"], entry["NAME"]) == (
        "pulp",
        "p@ss",
        "db.example",
        "6432",
        "pulp",
    )
    assert entry["OPTIONS"] == {
        "connect_timeout": 5,
        "application_name": "pulp-content",
        "sslmode": "require",
        "sslrootcert": "/etc/ca.pem",
    }
    assert entry["CONN_MAX_AGE"] is None
    params = connect_params(url)
    assert params["sslmode"] == "require" and params["sslrootcert"] == "/etc/ca.pem"
    assert "application_name" not in params  # whoever connects names its connection


def test_the_url_wins_over_the_defaults_and_a_host_may_be_a_socket_directory():
    entry = database_settings(
        "postgresql://pulp@%2Frun%2Fpostgresql/pulp?connect_timeout=20&application_name=a"
        "&options=-c%20statement_timeout%3D5000"
    )
    assert entry["HOST"] == "/run/postgresql"
    assert entry["OPTIONS"] == {
        "connect_timeout": 20,
        "application_name": "a",
        "options": "-c statement_timeout=5000",
    }
    assert database_settings("postgres://127.0.0.1")["NAME"] == "postgres"


@pytest.mark.parametrize("url", ["postgres://u:secret@h:port/db", "postgres://u:secret@[::1/db"])
def test_a_broken_url_is_refused_without_its_password(url):
    with pytest.raises(InvalidInput) as caught:
        database_settings(url)
    assert "secret" not in str(caught.value)


def test_database_connections_is_a_bounded_number():
    assert load_settings({}).database_connections == 6
    assert load_settings({"PULP_CONTENT_DATABASE_CONNECTIONS": "9"}).database_connections == 9
    assert load_settings({"PULP_CONTENT_DATABASE_CONNECTIONS": "4"}).database_connections == 4
    for wrong in ("3", "0", "-1", "many", "inf"):
        with pytest.raises(InvalidInput, match="PULP_CONTENT_DATABASE_CONNECTIONS"):
            load_settings({"PULP_CONTENT_DATABASE_CONNECTIONS": wrong})


@pytest.mark.postgres_only
def test_sslmode_reaches_the_server(settings, tmp_path):
    """`?sslmode=require` is obeyed by a fresh `pulp-content migrate`: refused by a server
    without TLS (with the option dropped it would connect in the clear), encrypted by
    one with it."""
    from tests.conftest import _admin_or_skip, throwaway_postgres

    admin = _admin_or_skip()
    with admin.cursor() as cur:
        cur.execute("SHOW ssl")
        server_tls = cur.fetchone()[0] == "on"
    admin.close()
    with throwaway_postgres("pulp_content_ssl") as url:
        env = {
            **os.environ,
            "PULP_CONTENT_HOME": str(tmp_path),
            "PULP_CONTENT_DATABASE_URL": url + "?sslmode=require",
        }
        done = run_command("migrate", env=env)
        if server_tls:
            assert done.returncode == 0, done.stderr
        else:
            assert done.returncode == 1
            (line,) = done.stderr.strip().splitlines()
            assert line.startswith("Error: cannot open the database: ")
            assert line.endswith("server does not support SSL, but SSL was required")
            plain = {**env, "PULP_CONTENT_DATABASE_URL": url}
            assert run_command("migrate", env=plain).returncode == 0


@pytest.mark.postgres_only
def test_the_services_connections_carry_the_urls_application_name(settings, tmp_path):
    from tests.conftest import _admin_or_skip, throwaway_postgres

    with throwaway_postgres("pulp_content_appname") as url:
        env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_DATABASE_URL": url}
        assert run_command("migrate", env=env).returncode == 0
        # keepalives_idle: the invalidation watcher sets it too, unless the URL does.
        env["PULP_CONTENT_DATABASE_URL"] = url + "?application_name=mirror-a&keepalives_idle=5"
        port = free_port()
        process = subprocess.Popen(
            [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        admin = _admin_or_skip()
        try:

            def names() -> set[str]:
                with admin.cursor() as cur:
                    cur.execute(
                        "SELECT application_name FROM pg_stat_activity WHERE datname = %s",
                        (url.rsplit("/", 1)[1],),
                    )
                    return {row[0] for row in cur.fetchall()}

            # The start-up sweep reads the database on a reader thread's connection.
            assert eventually(lambda: "mirror-a" in names(), timeout=60), names()
            # The watcher connects with the URL's keepalives_idle in place of its own.
            assert eventually(lambda: "pulp-content invalidation" in names(), timeout=30)
            time.sleep(0.5)
            assert names() <= {"mirror-a", "pulp-content locks", "pulp-content invalidation"}
            assert process.poll() is None
        finally:
            admin.close()
            process.terminate()
            process.wait(timeout=30)
