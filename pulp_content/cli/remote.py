"""`pulp-content remote`: where content comes from, and how it is downloaded."""

from __future__ import annotations

from typing import Any

import click

from pulp_content.cli.common import (
    SECONDS,
    ByteSize,
    CommandGroup,
    echo_record,
    json_option,
    parse_headers,
    read_file_option,
)
from pulp_content.cli.records import record_commands
from pulp_content.service.retries import DEFAULT_RETRIES, MAX_RETRIES, MAX_WAIT

POLICY = click.Choice(["immediate", "on_demand", "streamed"])


def remote_options(creating: bool) -> Any:
    """The download settings of a remote, shared by `create` and `update`."""
    options = [
        click.option(
            "--url",
            required=creating,
            help="URL of the PULP_MANIFEST (a user:password@ in it is kept apart, encrypted).",
        ),
        click.option(
            "--policy",
            type=POLICY,
            default="immediate" if creating else None,
            show_default=creating,
            help="When artifacts are downloaded.",
        ),
        click.option("--username", help="Basic auth user name."),
        click.option("--password", help="Basic auth password (stored encrypted)."),
        click.option(
            "--header",
            "headers",
            multiple=True,
            metavar="'NAME: VALUE'",
            help="Extra request header (repeatable; values stored encrypted, sent to the "
            "remote's own host and port only).",
        ),
        click.option(
            "--ca-cert",
            type=click.Path(dir_okay=False),
            help="PEM file of the CA that signs the remote's certificate.",
        ),
        click.option(
            "--client-cert",
            type=click.Path(dir_okay=False),
            help="PEM file of a client certificate.",
        ),
        click.option(
            "--client-key",
            type=click.Path(dir_okay=False),
            help="PEM file of the client certificate's key (stored encrypted).",
        ),
        click.option(
            "--tls-validation/--no-tls-validation",
            default=None,
            help="Verify the remote's certificate (default: yes).",
        ),
        click.option("--proxy-url", help="HTTP proxy to download through."),
        click.option("--proxy-username", help="The proxy's basic auth user name."),
        click.option("--proxy-password", help="The proxy's basic auth password (encrypted)."),
        click.option("--connect-timeout", type=SECONDS, help="Seconds to connect."),
        click.option(
            "--sock-read-timeout",
            type=SECONDS,
            help="Seconds without a byte before a download fails.",
        ),
        click.option("--total-timeout", type=SECONDS, help="Seconds for a whole download."),
        click.option(
            "--download-concurrency",
            type=click.IntRange(1, 2**31 - 1),
            help="Parallel downloads during an immediate sync.",
        ),
        click.option(
            "--max-size",
            type=ByteSize(),
            help="Largest file downloaded on a client's request (pull-through, on_demand, "
            "streamed), e.g. 500M; larger ones are refused with a 502. 0: no bound.",
        ),
        click.option(
            "--quota",
            type=ByteSize(),
            help="Storage the remote's on_demand and pull-through files may take, e.g. 10G; "
            "past it the least recently used are reclaimed (fetched again on request), and "
            "a larger file is served but not kept. 0: no bound.",
        ),
        click.option(
            "--retries",
            type=click.IntRange(0, MAX_RETRIES),
            help="Times a request answered 429 or 5xx, or not answered, is sent again before "
            f"the first byte (default: {DEFAULT_RETRIES}; 0: never); a Retry-After is "
            f"honoured up to {MAX_WAIT:g} s.",
        ),
        click.option(
            "--forward-query/--no-forward-query",
            default=None,
            help="Send a pull-through request's query string upstream (default: no).",
        ),
        click.option(
            "--mutable",
            multiple=True,
            metavar="GLOB",
            help="Pull-through: files that change at the same URL, revalidated once older "
            "than --metadata-max-age (repeatable; beside the built-in Debian, RPM, PyPI "
            "and JSON index patterns; matched below the remote's URL; '' clears them).",
        ),
        click.option(
            "--metadata-max-age",
            type=click.IntRange(0, 2**31 - 1),
            help="Pull-through: seconds a mutable file is fresh (default 300; an upstream "
            "Cache-Control or Expires that says less wins).",
        ),
        click.option(
            "--max-stale",
            type=click.IntRange(0, 2**31 - 1),
            help="Pull-through: seconds a stale mutable file is still served while the "
            "upstream is down or failing (default 86400).",
        ),
    ]

    def decorate(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def remote_fields(options: dict[str, Any]) -> dict[str, Any]:
    """Model fields from the options that were given (None means: not given)."""
    fields = {k: v for k, v in options.items() if v is not None and k not in ("headers", "mutable")}
    if options.get("mutable"):
        fields["mutable"] = [p for p in options["mutable"] if p]  # --mutable '': none
    if options.get("headers"):
        fields["headers"] = parse_headers(options["headers"])
    for key in ("ca_cert", "client_cert", "client_key"):
        if key in fields:
            fields[key] = read_file_option(fields[key], "--" + key.replace("_", "-"))
    for bound in ("max_size", "quota"):
        if fields.get(bound) == 0:
            fields[bound] = None  # no bound
    return fields


@click.group(cls=CommandGroup)
def remote() -> None:
    """Upstream sources of content."""


@remote.command("create")
@click.argument("name")
@remote_options(creating=True)
@json_option("the remote")
def remote_create(name: str, as_json: bool, **options: Any) -> None:
    """Create a remote."""
    from pulp_content.service.catalog import create_remote

    created = create_remote(name, **remote_fields(options))
    if as_json:
        echo_record("remote", created)
    else:
        click.echo(f"created remote {created.name}")


@remote.command("update")
@click.argument("name")
@remote_options(creating=False)
@json_option("the remote")
def remote_update(name: str, as_json: bool, **options: Any) -> None:
    """Change settings of a remote."""
    from pulp_content.service.catalog import update_remote

    updated = update_remote(name, **remote_fields(options))
    if as_json:
        echo_record("remote", updated)
    else:
        click.echo(f"updated remote {name}")


record_commands(
    remote,
    "remote",
    ("NAME", "POLICY", "URL"),
    lambda doc: (doc["name"], doc["policy"], doc["url"]),
    "Delete a remote (and its remote artifacts).",
)
