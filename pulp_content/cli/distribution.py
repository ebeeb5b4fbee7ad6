"""`pulp-content distribution`: what the URL space serves, at which base path."""

from __future__ import annotations

from typing import Any

import click

from pulp_content.cli.common import (
    ROW_ID,
    CommandGroup,
)
from pulp_content.cli.records import record_commands


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


record_commands(
    distribution,
    "distribution",
    lambda doc: f"{doc['name']}\t{doc['base_path']}",
    "Delete a distribution (its content stays).",
)
