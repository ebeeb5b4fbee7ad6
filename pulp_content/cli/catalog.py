"""The commands that create and change remotes, repositories, publications, distributions."""

from __future__ import annotations

from typing import Any

import click

from pulp_content.cli.common import (
    ROW_ID,
    SECONDS,
    ByteSize,
    Command,
    CommandGroup,
    emit_list,
    emit_one,
    parse_headers,
    progress_callbacks,
    read_file_option,
    settings,
)
from pulp_content.service.storage import open_storage

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
            "--forward-query/--no-forward-query",
            default=None,
            help="Send a pull-through request's query string upstream (default: no).",
        ),
    ]

    def decorate(func: Any) -> Any:
        for option in reversed(options):
            func = option(func)
        return func

    return decorate


def remote_fields(options: dict[str, Any]) -> dict[str, Any]:
    """Model fields from the options that were given (None means: not given)."""
    fields = {k: v for k, v in options.items() if v is not None and k != "headers"}
    if options.get("headers"):
        fields["headers"] = parse_headers(options["headers"])
    for key in ("ca_cert", "client_cert", "client_key"):
        if key in fields:
            fields[key] = read_file_option(fields[key], "--" + key.replace("_", "-"))
    if fields.get("max_size") == 0:
        fields["max_size"] = None  # no bound
    return fields


@click.group(cls=CommandGroup)
def remote() -> None:
    """Upstream sources of content."""


@remote.command("create")
@click.argument("name")
@remote_options(creating=True)
def remote_create(name: str, **options: Any) -> None:
    """Create a remote."""
    from pulp_content.service.catalog import create_remote

    created = create_remote(name, **remote_fields(options))
    click.echo(f"created remote {created.name}")


@remote.command("update")
@click.argument("name")
@remote_options(creating=False)
def remote_update(name: str, **options: Any) -> None:
    """Change settings of a remote."""
    from pulp_content.service.catalog import update_remote

    update_remote(name, **remote_fields(options))
    click.echo(f"updated remote {name}")


@remote.command("list")
@click.option("--json", "as_json", is_flag=True)
def remote_list(as_json: bool) -> None:
    """List remotes."""
    from pulp_content.service.catalog import remote_as_dict
    from pulp_content.service.models import Remote

    docs = [remote_as_dict(r) for r in Remote.objects.order_by("name")]
    emit_list(docs, as_json, lambda doc: f"{doc['name']}\t{doc['policy']}\t{doc['url']}")


@remote.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def remote_show(name: str, as_json: bool) -> None:
    """Show one remote."""
    from pulp_content.service.catalog import get_named, remote_as_dict
    from pulp_content.service.models import Remote

    doc = remote_as_dict(get_named(Remote, name))
    emit_one(doc, as_json)


@remote.command("delete")
@click.argument("name")
def remote_delete(name: str) -> None:
    """Delete a remote (and its remote artifacts)."""
    from pulp_content.service.catalog import delete_named
    from pulp_content.service.models import Remote

    delete_named(Remote, name)
    click.echo(f"deleted remote {name}")


@click.group(cls=CommandGroup)
def repository() -> None:
    """Versioned sets of content."""


@repository.command("create")
@click.argument("name")
@click.option("--remote", "remote_name", help="The remote `sync` uses by default.")
def repository_create(name: str, remote_name: str | None) -> None:
    """Create a repository (with its empty version 0)."""
    from pulp_content.service.catalog import create_repository

    create_repository(name, remote_name)
    click.echo(f"created repository {name}")


@repository.command("sync")
@click.argument("name")
@click.option("--remote", "remote_name", help="Sync from this remote instead.")
def repository_sync(name: str, remote_name: str | None) -> None:
    """Mirror the remote's PULP_MANIFEST into a new repository version."""
    from pulp_content.service.sync import sync

    current = settings()
    on_total, advance, close = progress_callbacks()
    try:
        version = sync(open_storage(current), name, remote_name, advance, on_total)
    finally:
        close()
    click.echo(f"synced {name}: version {version.number}")


@repository.command("list")
@click.option("--json", "as_json", is_flag=True)
def repository_list(as_json: bool) -> None:
    """List repositories with their latest version."""
    from pulp_content.service.catalog import latest_version
    from pulp_content.service.models import Repository

    docs = [
        {
            "name": r.name,
            "remote": r.remote.name if r.remote else None,
            "latest_version": latest_version(r).number,
        }
        for r in Repository.objects.select_related("remote").order_by("name")
    ]
    emit_list(
        docs,
        as_json,
        lambda doc: f"{doc['name']}\tversion {doc['latest_version']}\tremote {doc['remote']}",
    )


@repository.command("delete")
@click.argument("name")
def repository_delete(name: str) -> None:
    """Delete a repository and its versions."""
    from pulp_content.service.catalog import delete_named
    from pulp_content.service.models import Repository

    delete_named(Repository, name)
    click.echo(f"deleted repository {name}")


@click.group(cls=CommandGroup)
def publication() -> None:
    """Servable snapshots of repository versions."""


@publication.command("create")
@click.option("--repository", "repository_name", required=True)
@click.option("--version", "number", type=ROW_ID, help="Version number (default: latest).")
@click.option("--pass-through", is_flag=True, help="Serve the version's content directly.")
def publication_create(repository_name: str, number: int | None, pass_through: bool) -> None:
    """Publish a repository version; prints the publication id last."""
    from pulp_content.service.catalog import create_publication

    current = settings()
    pub = create_publication(open_storage(current), repository_name, number, pass_through)
    click.echo(pub.pk)


@publication.command("list")
@click.option("--json", "as_json", is_flag=True)
def publication_list(as_json: bool) -> None:
    """List publications."""
    from pulp_content.service.models import Publication

    docs = [
        {
            "id": p.pk,
            "repository": p.repository_version.repository.name,
            "version": p.repository_version.number,
            "pass_through": p.pass_through,
        }
        for p in Publication.objects.select_related("repository_version__repository").order_by("pk")
    ]
    emit_list(docs, as_json, lambda doc: f"{doc['id']}\t{doc['repository']}:{doc['version']}")


def source_options(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--repository", "repository_name", help="Serve its latest version."),
            click.option("--version", "version", metavar="NAME:N", help="Serve a fixed version."),
            click.option(
                "--publication", "publication_id", type=ROW_ID, help="Serve a publication."
            ),
            click.option("--remote", "remote_name", help="Pull through from a remote."),
            click.option("--guard", help="Content guard to apply."),
        ]
    ):
        func = option(func)
    return func


@click.group(cls=CommandGroup)
def distribution() -> None:
    """Base paths in the URL space and what they serve."""


@distribution.command("create")
@click.argument("name")
@click.option("--base-path", required=True)
@source_options
def distribution_create(
    name: str,
    base_path: str,
    repository_name: str | None,
    version: str | None,
    publication_id: int | None,
    remote_name: str | None,
    guard: str | None,
) -> None:
    """Create a distribution serving exactly one source."""
    from pulp_content.service.catalog import create_distribution

    dist = create_distribution(
        name,
        base_path,
        repository=repository_name,
        version=version,
        publication=publication_id,
        remote=remote_name,
        guard=guard,
    )
    click.echo(f"created distribution {dist.name} at {dist.base_path}")


@distribution.command("update")
@click.argument("name")
@click.option("--base-path")
@source_options
@click.option("--no-guard", is_flag=True, help="Remove the content guard.")
def distribution_update(
    name: str,
    base_path: str | None,
    repository_name: str | None,
    version: str | None,
    publication_id: int | None,
    remote_name: str | None,
    guard: str | None,
    no_guard: bool,
) -> None:
    """Change what a distribution serves, where, or its guard."""
    from pulp_content.service.catalog import update_distribution

    update_distribution(
        name,
        base_path=base_path,
        repository=repository_name,
        version=version,
        publication=publication_id,
        remote=remote_name,
        guard=guard,
        clear_guard=no_guard,
    )
    click.echo(f"updated distribution {name}")


@distribution.command("list")
@click.option("--json", "as_json", is_flag=True)
def distribution_list(as_json: bool) -> None:
    """List distributions."""
    from pulp_content.service.catalog import distribution_as_dict
    from pulp_content.service.models import Distribution

    docs = [
        distribution_as_dict(d)
        for d in Distribution.objects.select_related(
            "repository", "repository_version__repository", "remote", "content_guard"
        ).order_by("base_path")
    ]
    emit_list(docs, as_json, lambda doc: f"{doc['name']}\t{doc['base_path']}")


@distribution.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def distribution_show(name: str, as_json: bool) -> None:
    """Show one distribution."""
    from pulp_content.service.catalog import distribution_as_dict, get_named
    from pulp_content.service.models import Distribution

    doc = distribution_as_dict(get_named(Distribution, name))
    emit_one(doc, as_json)


@distribution.command("delete")
@click.argument("name")
def distribution_delete(name: str) -> None:
    """Delete a distribution (its content stays)."""
    from pulp_content.service.catalog import delete_named
    from pulp_content.service.models import Distribution

    delete_named(Distribution, name)
    click.echo(f"deleted distribution {name}")


@click.group(cls=CommandGroup)
def guard() -> None:
    """Content guards: who may fetch from a distribution."""


@guard.command("create")
@click.argument("name")
@click.option("--kind", type=click.Choice(["header", "basic", "signed-url", "x509"]), required=True)
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
def guard_create(
    name: str,
    kind: str,
    header: str | None,
    values: tuple[str, ...],
    users: tuple[str, ...],
    ca_cert: str | None,
    intermediates: str | None,
    key: str | None,
) -> None:
    """Create a guard; attach it with `distribution update NAME --guard GUARD`."""
    from pulp_content.service.catalog import create_guard

    create_guard(
        name,
        kind,
        header=header,
        values=values,
        users=users,
        key=key,
        ca_pem=read_file_option(ca_cert, "--ca-cert"),
        intermediates_pem=read_file_option(intermediates, "--intermediates"),
    )
    click.echo(f"created {kind} guard {name}")


@guard.command("list")
@click.option("--json", "as_json", is_flag=True)
def guard_list(as_json: bool) -> None:
    """List guards."""
    from pulp_content.service.catalog import guard_as_dict
    from pulp_content.service.models import ContentGuard

    docs = [guard_as_dict(g) for g in ContentGuard.objects.order_by("name")]
    emit_list(
        docs,
        as_json,
        lambda doc: f"{doc['name']}\t{doc['kind']}\t{', '.join(doc['distributions'])}",
    )


@guard.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
def guard_show(name: str, as_json: bool) -> None:
    """Show one guard (without its secrets)."""
    from pulp_content.service.catalog import get_named, guard_as_dict
    from pulp_content.service.models import ContentGuard

    doc = guard_as_dict(get_named(ContentGuard, name))
    emit_one(doc, as_json)


@guard.command("delete")
@click.argument("name")
def guard_delete(name: str) -> None:
    """Delete a guard (distributions that used it are no longer guarded)."""
    from pulp_content.service.catalog import delete_named
    from pulp_content.service.models import ContentGuard

    delete_named(ContentGuard, name)
    click.echo(f"deleted guard {name}")


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
    `a b%.txt` is `.../a%20b%25.txt`)."""
    from pulp_content.service.catalog import sign_url

    current = settings()

    click.echo(sign_url(url, expires, current.content_prefix))
