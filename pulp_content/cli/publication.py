"""`pulp-content publication`: servable snapshots of repository versions."""

from __future__ import annotations

import click

from pulp_content.cli.common import (
    ROW_ID,
    CommandGroup,
    echo_record,
    json_option,
    settings,
)
from pulp_content.cli.records import record_commands
from pulp_content.service.storage import open_storage


@click.group(cls=CommandGroup)
def publication() -> None:
    """Servable snapshots of repository versions."""


@publication.command("create")
@click.option("--repository", "repository_name", required=True, help="The repository to publish.")
@click.option("--version", "number", type=ROW_ID, help="Version number (default: latest).")
@click.option("--pass-through", is_flag=True, help="Serve the version's content directly.")
@json_option("the publication")
def publication_create(
    repository_name: str, number: int | None, pass_through: bool, as_json: bool
) -> None:
    """Publish a repository version; prints the publication id last."""
    from pulp_content.service.catalog import create_publication

    current = settings()
    pub = create_publication(open_storage(current), repository_name, number, pass_through)
    if as_json:
        echo_record("publication", pub)
    else:
        click.echo(pub.pk)


record_commands(
    publication,
    "publication",
    ("ID", "REPOSITORY", "VERSION", "PASS THROUGH"),
    lambda doc: (doc["id"], doc["repository"], doc["version"], doc["pass_through"]),
    None,
    show=False,
)
