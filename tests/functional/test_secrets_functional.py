"""Secrets: never in a response, a log line or CLI output; encrypted at rest with a key
kept outside the database; a private home. Each command runs in a fresh process."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import Fault, FileSpec
from tests.functional.conftest import ServiceProcess
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

FILE = FileSpec("f.bin", 40_000, 41)
URL_PASSWORD = "url-pw-7Hq2"
PASSWORD = "opt-pw-K9x4"
PROXY_PASSWORD = "proxy-pw-Zt61"
HEADER_VALUE = "header-value-Vb38"
# A real client certificate and key: remote create checks that they load and match.
_CLIENT = trustme.CA().issue_cert("client.example")
CLIENT_CERT = b"".join(blob.bytes() for blob in _CLIENT.cert_chain_pems).decode()
CLIENT_KEY = _CLIENT.private_key_pem.bytes().decode()
# A line from the middle of the key's base64: what a leak of the key would show.
CLIENT_KEY_MARK = CLIENT_KEY.splitlines()[2]
GUARD_VALUE = "guard-value-Lp90"
SIGNING_KEY = "signing-key-Qe27"
BASIC_PASSWORD = "basic-pw-Mn03"
SECRETS = (
    URL_PASSWORD,
    PASSWORD,
    PROXY_PASSWORD,
    HEADER_VALUE,
    CLIENT_KEY_MARK,
    GUARD_VALUE,
    SIGNING_KEY,
    BASIC_PASSWORD,
)


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment of a new installation: its own home, and (on a PostgreSQL run) its
    own migrated database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    env["PULP_CONTENT_HOME"] = str(tmp_path / "home")
    if os.environ.get("PULP_CONTENT_TEST_DATABASE") != "postgres":
        run(env, "migrate")  # only migrate (or serve on a brand-new home) makes the database
        yield env
        return
    from tests.conftest import throwaway_postgres

    with throwaway_postgres("pulp_content_secrets") as url:
        env["PULP_CONTENT_DATABASE_URL"] = url
        run(env, "migrate")
        yield env


def run(env: dict[str, str], *args: str) -> str:
    """`pulp-content ARGS` in a fresh process; its stdout, after checking it succeeded."""
    done = run_command(*args, env=env)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout + done.stderr


def refused(env: dict[str, str], *args: str) -> str:
    """The one `Error: ...` line of a command that must fail."""
    done = run_command(*args, env=env)
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), done.stderr
    return lines[0]


def database_text(env: dict[str, str]) -> str:
    """Everything the database holds, as text: the SQLite files byte for byte, or every
    row of every table of the PostgreSQL database."""
    url = env.get("PULP_CONTENT_DATABASE_URL")
    if url is None:
        home = Path(env["PULP_CONTENT_HOME"])
        files = [home / name for name in ("db.sqlite3", "db.sqlite3-wal")]
        return "".join(p.read_bytes().decode("latin-1") for p in files if p.exists())
    import psycopg2

    from pulp_content.service.config import connect_params

    conn = psycopg2.connect(**connect_params(url))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
            tables = [row[0] for row in cur.fetchall()]
            rows = []
            for table in tables:
                cur.execute(f'SELECT t::text FROM "{table}" t')
                rows += [row[0] for row in cur.fetchall()]
        return "\n".join(rows)
    finally:
        conn.close()


def key_file(env: dict[str, str]) -> Path:
    return Path(env["PULP_CONTENT_HOME"]) / "keys" / "secret.key"


def private_repository(upstream, name: str = "private") -> str:
    """A repository behind basic auth (user `u`, URL_PASSWORD) on the fixture remote; its
    manifest URL with the credentials in it."""
    upstream.add_repository(name, [FILE])
    upstream.set_fault(name, Fault("basic_auth", username="u", password=URL_PASSWORD))
    return upstream.manifest_url(name).replace("http://", f"http://u:{URL_PASSWORD}@")


def catalog_with_secrets(env: dict[str, str], upstream, tmp_path: Path) -> None:
    """Two remotes and three guards holding every kind of secret, through the CLI; the
    lazy repository `private` is synced and served at private/."""
    url = private_repository(upstream)
    run(env, "remote", "create", "private", "--url", url, "--policy", "on_demand")
    run(env, "remote", "update", "private", "--header", f"X-Token: {HEADER_VALUE}")
    run(env, "repository", "create", "private", "--remote", "private")
    run(env, "repository", "sync", "private")  # the moved URL credentials still work
    run(
        env,
        "distribution",
        "create",
        "private",
        "--base-path",
        "private",
        "--repository",
        "private",
    )
    key, cert = tmp_path / "client.key", tmp_path / "client.pem"
    key.write_text(CLIENT_KEY)
    cert.write_text(CLIENT_CERT)
    run(
        env,
        "remote",
        "create",
        "proxied",
        "--url",
        "https://mirror.example/PULP_MANIFEST",
        "--username",
        "someone",
        "--password",
        PASSWORD,
        "--proxy-url",
        f"http://proxyuser:{PROXY_PASSWORD}@127.0.0.1:3128",
        "--client-key",
        str(key),
        "--client-cert",
        str(cert),
    )
    run(
        env,
        "guard",
        "create",
        "token",
        "--kind",
        "header",
        "--header",
        "X-Auth",
        "--value",
        GUARD_VALUE,
    )
    run(env, "guard", "create", "links", "--kind", "signed-url", "--key", SIGNING_KEY)
    run(env, "guard", "create", "people", "--kind", "basic", "--user", f"alice:{BASIC_PASSWORD}")


@pytest.fixture
def catalog(fresh, upstream, tmp_path) -> dict[str, str]:
    catalog_with_secrets(fresh, upstream, tmp_path)
    return fresh


def test_no_secret_in_any_cli_output(catalog, upstream):
    env = catalog
    outputs = {}
    for args in (
        ("remote", "list"),
        ("remote", "list", "--json"),
        ("remote", "show", "private"),
        ("remote", "show", "private", "--json"),
        ("remote", "show", "proxied"),
        ("remote", "show", "proxied", "--json"),
        ("guard", "list"),
        ("guard", "list", "--json"),
        ("guard", "show", "token"),
        ("guard", "show", "token", "--json"),
        ("guard", "show", "links", "--json"),
        ("guard", "show", "people", "--json"),
        ("resolve", "/pulp/content/private/f.bin"),
        ("resolve", "/pulp/content/private/f.bin", "--json"),
        ("distribution", "show", "private", "--json"),
    ):
        outputs[args] = run(env, *args)
    for args, text in outputs.items():
        leaked = [secret for secret in SECRETS if secret in text]
        assert not leaked, (args, leaked, text)
    proxied = json.loads(outputs[("remote", "show", "proxied", "--json")])
    assert proxied["password"] == proxied["proxy_password"] == proxied["client_key"] == "***"
    assert proxied["proxy_url"] == "http://127.0.0.1:3128"
    assert proxied["proxy_username"] == "proxyuser"
    private = json.loads(outputs[("remote", "show", "private", "--json")])
    assert private["headers"] == {"X-Token": "***"}
    assert private["username"] == "u" and private["password"] == "***"
    assert "@" not in private["url"]
    token = json.loads(outputs[("guard", "show", "token", "--json")])
    assert token["header"] == "X-Auth" and token["values"] == ["***"]
    resolved = json.loads(outputs[("resolve", "/pulp/content/private/f.bin", "--json")])
    assert resolved["action"] == "stream"
    assert resolved["remote_artifacts"][0]["url"] == upstream.file_url("private", "f.bin")


def test_secrets_are_encrypted_at_rest_with_a_private_key_file(catalog):
    stored = database_text(catalog)
    assert "fernet:" in stored  # the secrets are there, encrypted
    leaked = [secret for secret in SECRETS if secret in stored]
    assert not leaked
    key = key_file(catalog)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700


def test_a_guard_still_checks_its_encrypted_value(catalog):
    """The service decrypts what it reads with raw SQL (guard settings, remote secrets)."""
    env = catalog
    run(
        env,
        "guard",
        "create",
        "checked",
        "--kind",
        "header",
        "--header",
        "X-Auth",
        "--value",
        GUARD_VALUE,
    )
    run(env, "distribution", "update", "private", "--guard", "checked")
    port = free_port()
    with served(env, port):
        assert get(port, "/pulp/content/private/f.bin")[0] == 403
        # Allowed, and the lazy download sent the remote's decrypted password.
        allowed = get(port, "/pulp/content/private/f.bin", {"X-Auth": GUARD_VALUE})
        assert allowed == (200, FILE.content())


@contextlib.contextmanager
def served(env: dict[str, str], port: int) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        yield process
    finally:
        process.terminate()
        process.wait(timeout=60)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """GET on a real socket: the status and the body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_missing_or_wrong_key_is_one_clear_line(catalog, tmp_path):
    env = catalog
    key = key_file(env)
    moved = tmp_path / "elsewhere.key"
    key.rename(moved)
    missing = refused(env, "remote", "show", "private")
    assert f"the key file {key} is missing" in missing
    assert refused(env, "serve", "--bind", f"127.0.0.1:{free_port()}") == missing
    # No new key over secrets encrypted with another one: that would split them.
    assert "is missing" in refused(
        env, "remote", "create", "other", "--url", "http://x/", "--password", "p"
    )
    assert not key.exists()
    # The key may live anywhere: the variable, or the settings file, says where.
    assert "***" in run(
        {**env, "PULP_CONTENT_SECRET_KEY_FILE": str(moved)}, "remote", "show", "private"
    )
    config = tmp_path / "pulp-content.toml"
    config.write_text(f'secret_key_file = "{moved}"\n')
    assert "***" in run(env, "--config", str(config), "remote", "show", "private")
    other = tmp_path / "other.key"
    other.write_text("x9JSTBDQrz_wV4wcmbLC_gOm2lWnB3L5g9Ev37LnsnE=\n")
    wrong = refused(
        {**env, "PULP_CONTENT_SECRET_KEY_FILE": str(other)}, "remote", "show", "private"
    )
    assert "does not decrypt the stored secrets" in wrong


def test_rotate_reencrypts_every_secret_under_a_new_key(catalog, upstream, tmp_path):
    env = catalog
    key = key_file(env)
    old_key = tmp_path / "old.key"
    old_key.write_bytes(key.read_bytes())
    peer = subprocess.run(PEER_SECRET, env=env, capture_output=True, text=True, timeout=120)
    assert peer.returncode == 0 and len(peer.stdout.strip()) == 64, peer.stderr  # made now
    before = tokens(database_text(env))
    assert len(before) >= 8
    output = run(env, "secrets", "rotate")
    assert "re-encrypted" in output
    assert key.read_bytes() != old_key.read_bytes()
    assert len(key.read_text().split()) == 1  # the old key is gone from the file
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    after = tokens(database_text(env))
    assert len(after) >= len(before) and not (before & after)
    assert not [secret for secret in SECRETS if secret in database_text(env)]
    # The old key no longer opens anything; the new one does, in a fresh process: the
    # sync sends the remote's decrypted password (the fixture remote checks it).
    stale = {**env, "PULP_CONTENT_SECRET_KEY_FILE": str(old_key)}
    assert "does not decrypt" in refused(stale, "remote", "show", "private")
    # The hosts' shared secret (service.peers) is the same secret under the new key.
    again = subprocess.run(PEER_SECRET, env=env, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and again.stdout == peer.stdout, again.stderr
    upstream.reset()
    upstream.set_fault("private", Fault("basic_auth", username="u", password=URL_PASSWORD))
    assert "version 2" in run(env, "repository", "sync", "private")
    assert upstream.count("/private/PULP_MANIFEST") == 1


# The secret the hosts of a service share, read (or made) as a host does at start.
PEER_SECRET = [
    sys.executable,
    "-c",
    "from pulp_content.service.config import configure_django, load_settings\n"
    "configure_django(load_settings())\n"
    "from pulp_content.service.secretdata import peer_secret\n"
    "print(peer_secret().decode())",
]


def tokens(text: str) -> set[str]:
    import re

    return set(re.findall(r"fernet:[A-Za-z0-9_=-]{40,}", text))


MIGRATE_TO_0002_AND_WRITE_PLAINTEXT = textwrap.dedent(
    """
    import json, sys
    from django.core.management import call_command
    from django.db import connection
    from pulp_content.service.config import configure_django, load_settings

    configure_django(load_settings())
    call_command("migrate", "service", "0002", verbosity=0)
    url, header, key, guard = sys.argv[1:5]
    with connection.cursor() as c:
        c.execute(
            "INSERT INTO service_remote (name, url, policy, headers, client_key, tls_validation,"
            " proxy_url, connect_timeout, sock_read_timeout, download_concurrency, created,"
            " updated) VALUES ('old', %s, 'on_demand', %s, %s, true, %s, 20, 60, 10,"
            " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)",
            [url, json.dumps({"X-Token": header}), key, url.rsplit("/", 2)[0]],
        )
        c.execute(
            "INSERT INTO service_contentguard (name, kind, settings) VALUES ('g', 'header', %s)",
            [json.dumps({"header": "X-Auth", "values": [guard]})],
        )
        c.execute("INSERT INTO service_content (relative_path, sha256, size, created)"
                  " VALUES ('f.bin', %s, 1, CURRENT_TIMESTAMP)", ["a" * 64])
        c.execute("INSERT INTO service_contentartifact (content_id, relative_path)"
                  " SELECT id, 'f.bin' FROM service_content")
        c.execute("INSERT INTO service_remoteartifact (content_artifact_id, remote_id, url)"
                  " SELECT ca.id, r.id, %s FROM service_contentartifact ca, service_remote r",
                  [url.replace("PULP_MANIFEST", "f.bin")])
    """
)


def test_the_migration_encrypts_what_was_stored_in_plaintext(fresh):
    env = fresh
    url = f"http://u:{URL_PASSWORD}@127.0.0.1:9/repo/PULP_MANIFEST"
    script = [sys.executable, "-c", MIGRATE_TO_0002_AND_WRITE_PLAINTEXT]
    done = subprocess.run(
        [*script, url, HEADER_VALUE, CLIENT_KEY, GUARD_VALUE],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert URL_PASSWORD in database_text(env)  # as an older version left it
    run(env, "migrate")
    stored = database_text(env)
    assert not [secret for secret in SECRETS if secret in stored]
    shown = json.loads(run(env, "remote", "show", "old", "--json"))
    assert shown["url"] == "http://127.0.0.1:9/repo/PULP_MANIFEST"
    assert shown["username"] == "u" and shown["password"] == "***"
    assert shown["proxy_url"] == "http://127.0.0.1:9" and shown["proxy_username"] == "u"
    assert shown["headers"] == {"X-Token": "***"} and shown["client_key"] == "***"
    from_db = remote_artifact_urls(env)
    assert from_db == ["http://127.0.0.1:9/repo/f.bin"]


def remote_artifact_urls(env: dict[str, str]) -> list[str]:
    script = textwrap.dedent(
        """
        from pulp_content.service.config import configure_django, load_settings
        configure_django(load_settings())
        from pulp_content.service.models import RemoteArtifact
        print("\\n".join(RemoteArtifact.objects.values_list("url", flat=True)))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.fixture
def sqlite_home(tmp_path: Path) -> dict[str, str]:
    """A new installation on SQLite (whichever database the run tests)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    return {**env, "PULP_CONTENT_HOME": str(tmp_path / "home")}


def test_home_and_database_are_created_private(sqlite_home):
    env = sqlite_home
    home = Path(env["PULP_CONTENT_HOME"])
    run(env, "migrate")  # creates the home and the database
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert stat.S_IMODE((home / "db.sqlite3").stat().st_mode) == 0o600
    port = free_port()
    with served(env, port):
        assert get(port, "/health")[0] == 200
        # While the service has the database open, SQLite keeps its -wal and -shm files.
        for suffix in ("-wal", "-shm"):
            path = home / f"db.sqlite3{suffix}"
            assert eventually(path.exists), path
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_an_existing_world_readable_database_is_made_private(sqlite_home):
    env = sqlite_home
    home = Path(env["PULP_CONTENT_HOME"])
    home.mkdir(mode=0o755)
    database = home / "db.sqlite3"
    database.touch()
    os.chmod(home, 0o755)
    os.chmod(database, 0o644)
    run(env, "remote", "list")
    assert stat.S_IMODE(database.stat().st_mode) == 0o600
    assert stat.S_IMODE(home.stat().st_mode) == 0o755  # given access on purpose: kept


@pytest.mark.parametrize("where", ["remote url", "stored url"])
def test_no_credential_in_a_502_body_or_the_warning_log(scenario, where):
    """A client of a failing lazy download gets a 502 that names the upstream without its
    credentials; the service's WARNING line and its line per retry neither. `stored url`:
    a remote artifact URL that still carries them (written before they moved into their
    own fields)."""
    url = private_repository(scenario.remote)
    scenario.sync_from("private", url, "--policy", "on_demand")
    scenario.cli(
        "distribution", "create", "private", "--base-path", "private", "--repository", "private"
    )
    if where == "stored url":
        from pulp_content.service.models import RemoteArtifact

        RemoteArtifact.objects.update(url=url.replace("PULP_MANIFEST", "f.bin"))
    scenario.remote.set_fault("private/f.bin", Fault("status", status=500))
    with ServiceProcess(scenario.settings, workers=1) as service:
        status, raw = get(service.port, "/pulp/content/private/f.bin")
        body = raw.decode()
        assert status == 502
        assert scenario.remote.count("/private/f.bin") == 4  # the remote's 3 retries
        assert "answered 500" in body and "127.0.0.1" in body
        assert URL_PASSWORD not in body
        assert eventually(lambda: "failed before the first byte" in service.output())
        retries = [line for line in service.output().splitlines() if "retry " in line]
        assert len(retries) == 3 and all("remote private:" in line for line in retries)
        warning = [line for line in service.output().splitlines() if "WARNING" in line]
        assert warning and not [line for line in warning if URL_PASSWORD in line], warning
        assert URL_PASSWORD not in service.output()
    # The credentials did their job: the fixture remote checked them on the sync.
    assert scenario.remote.last_headers["/private/f.bin"]["Authorization"].startswith("Basic ")
