"""An upstream that requires a client certificate, as a user meets it: `fixture serve
--tls --client-cert` and `pulp-content` commands and `serve` each in a fresh process."""

from __future__ import annotations

import os
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI
from pulp_content.fixtures.remote import generate
from tests.functional.conftest import ServiceProcess
from tests.helpers import run_command

pytestmark = pytest.mark.functional

FILES = generate("tls", 2, (300_000,), seed=9)


@dataclass(frozen=True)
class TlsUpstream:
    manifest: str
    ca: Path
    cert: Path
    key: Path


@pytest.fixture
def tls_upstream(tmp_path: Path) -> Iterator[TlsUpstream]:
    """`pulp-content fixture serve --tls CA --client-cert CERT` as its own process."""
    ca, cert = tmp_path / "ca.pem", tmp_path / "client.pem"
    args = ["fixture", "serve", "--bind", "127.0.0.1:0", "--repository", "tls:2:300000:9"]
    args += ["--tls", str(ca)]
    process = subprocess.Popen(
        [*CLI, *args, "--client-cert", str(cert)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        manifest = next(line.strip() for line in process.stdout if "PULP_MANIFEST" in line)
        yield TlsUpstream(manifest, ca, cert, Path(f"{cert}.key"))
    finally:
        process.terminate()
        process.communicate(timeout=30)


def cli(env: dict[str, str], *args: str) -> str:
    done = run_command(*args, env=env)
    assert done.returncode == 0, (args, done.stderr)
    return done.stdout


def test_no_tls_validation_still_presents_the_client_certificate(db, tls_upstream):
    env = dict(os.environ)  # the test database (db sets PULP_CONTENT_HOME and _DATABASE_URL)
    up = tls_upstream
    client_cert = ("--client-cert", str(up.cert), "--client-key", str(up.key))
    cli(
        env,
        "remote",
        "create",
        "lax",
        "--url",
        up.manifest,
        "--policy",
        "on_demand",
        "--no-tls-validation",
        *client_cert,
    )
    cli(env, "repository", "create", "tls", "--remote", "lax")
    assert "synced tls: version 1" in cli(env, "repository", "sync", "tls")
    cli(env, "distribution", "create", "tls", "--base-path", "tls", "--repository", "tls")
    with ServiceProcess(db, workers=1) as served:
        url = f"http://127.0.0.1:{served.port}/pulp/content/tls/{FILES[0].relative_path}"
        with urllib.request.urlopen(url, timeout=60) as response:
            assert response.read() == FILES[0].content()  # a lazy fetch, over the same TLS

    # The same certificate with validation on and the CA: also fine.
    cli(
        env,
        "remote",
        "create",
        "strict",
        "--url",
        up.manifest,
        "--ca-cert",
        str(up.ca),
        *client_cert,
    )
    assert "synced tls" in cli(env, "repository", "sync", "tls", "--remote", "strict")

    # The upstream does insist: without the certificate the sync fails, in one line.
    cli(env, "remote", "create", "anonymous", "--url", up.manifest, "--no-tls-validation")
    refused = run_command("repository", "sync", "tls", "--remote", "anonymous", env=env)
    assert refused.returncode == 1
    assert len(refused.stderr.splitlines()) == 1, refused.stderr
    assert refused.stderr.startswith(f"Error: upstream {up.manifest}: ")


def test_a_client_key_that_does_not_match_is_refused_at_create(db, tls_upstream, tmp_path):
    import trustme

    other = tmp_path / "other.pem"
    other.write_bytes(trustme.CA().issue_cert("other.test").private_key_pem.bytes())
    refused = run_command(
        "remote",
        "create",
        "mismatch",
        "--url",
        tls_upstream.manifest,
        "--no-tls-validation",
        "--client-cert",
        str(tls_upstream.cert),
        "--client-key",
        str(other),
        env=dict(os.environ),
    )
    assert refused.returncode == 1
    assert refused.stderr.startswith("Error: the client certificate and key do not load")
    assert len(refused.stderr.splitlines()) == 1
    assert "mismatch" not in cli(dict(os.environ), "remote", "list")
