"""`pulp-content guard` and `sign`: content guards, and URLs for signed-url guards."""

from __future__ import annotations

import click

from pulp_content.cli.common import (
    Command,
    CommandGroup,
    echo_record,
    json_option,
    read_file_option,
    settings,
)
from pulp_content.cli.records import record_commands


@click.group(cls=CommandGroup)
def guard() -> None:
    """Content guards: who may fetch from a distribution."""


@guard.command("create")
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["header", "basic", "signed-url", "x509"]),
    required=True,
    help="header: a request header must hold a permitted value; basic: HTTP basic auth; "
    "signed-url: URLs made by `pulp-content sign`; x509: a client certificate.",
)
@click.option(
    "--header",
    help="header: the header to check; x509: the header carrying the "
    "client certificate (default X-Client-Cert).",
)
@click.option("--value", "values", multiple=True, help="header: a permitted value (repeatable).")
@click.option(
    "--user",
    "users",
    multiple=True,
    metavar="NAME:PASSWORD",
    help="basic: a user (repeatable); only a PBKDF2 hash is stored.",
)
@click.option(
    "--ca-cert",
    type=click.Path(dir_okay=False),
    help="x509: PEM file of the trusted CA certificate(s).",
)
@click.option(
    "--intermediates",
    type=click.Path(dir_okay=False),
    help="x509: PEM file of intermediate CA certificates between the trusted CA and the "
    "clients (not trusted themselves; nginx passes on the client's certificate only).",
)
@click.option("--key", help="signed-url: the HMAC key (default: a random one).")
@json_option("the guard")
def guard_create(
    name: str,
    kind: str,
    header: str | None,
    values: tuple[str, ...],
    users: tuple[str, ...],
    ca_cert: str | None,
    intermediates: str | None,
    key: str | None,
    as_json: bool,
) -> None:
    """Create a guard; attach it with `distribution update NAME --guard GUARD`."""
    from pulp_content.service.catalog import create_guard

    created = create_guard(
        name,
        kind,
        header=header,
        values=values,
        users=users,
        key=key,
        ca_pem=read_file_option(ca_cert, "--ca-cert"),
        intermediates_pem=read_file_option(intermediates, "--intermediates"),
    )
    if as_json:
        echo_record("guard", created)
    else:
        click.echo(f"created {kind} guard {name}")


record_commands(
    guard,
    "guard",
    ("NAME", "KIND", "DISTRIBUTIONS"),
    lambda doc: (doc["name"], doc["kind"], doc["distributions"]),
    "Delete a guard (distributions that used it are no longer guarded).",
)


@click.command(cls=Command)
@click.argument("url")
@click.option(
    "--expires",
    type=click.IntRange(1),
    default=3600,
    show_default=True,
    help="Seconds the signed URL stays valid.",
)
def sign(url: str, expires: int) -> None:
    """Print URL signed for its distribution's signed-url guard.

    URL is what the client will request, percent-encoded as it will be sent (a file named
    `a b%.txt` is `.../a%20b%25.txt`). A path such as /pulp/content/base/file.iso is
    taken on PULP_CONTENT_CONTENT_ORIGIN (default http://127.0.0.1:24816)."""
    from pulp_content.service.catalog import sign_url

    current = settings()

    click.echo(sign_url(url, expires, current.content_prefix, current.public_origin))
