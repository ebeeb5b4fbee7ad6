"""`pulp-content repository`: versioned sets of content, and syncing them."""

from __future__ import annotations

import click

from pulp_content.cli.common import (
    CommandGroup,
    echo_record,
    json_option,
    progress_callbacks,
    settings,
)
from pulp_content.cli.records import record_commands
from pulp_content.service.storage import open_storage


@click.group(cls=CommandGroup)
def repository() -> None:
    """Versioned sets of content."""


@repository.command("create")
@click.argument("name")
@click.option("--remote", "remote_name", help="The remote `sync` uses by default.")
@json_option("the repository")
def repository_create(name: str, remote_name: str | None, as_json: bool) -> None:
    """Create a repository (with its empty version 0)."""
    from pulp_content.service.catalog import create_repository

    created = create_repository(name, remote_name)
    if as_json:
        echo_record("repository", created)
    else:
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


record_commands(
    repository,
    "repository",
    ("NAME", "LATEST VERSION", "REMOTE"),
    lambda doc: (doc["name"], doc["latest_version"], doc["remote"]),
    "Delete a repository and its versions.",
)
