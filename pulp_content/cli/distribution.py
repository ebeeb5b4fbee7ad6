"""`pulp-content distribution`: what the URL space serves, at which base path."""

from __future__ import annotations

from typing import Any

import click

from pulp_content.cli.common import (
    ROW_ID,
    CommandGroup,
    Doc,
    echo_record,
    json_option,
    settings,
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


def with_url(doc: Doc) -> Doc:
    """A distribution with the URL clients fetch it at, after its base path: on
    PULP_CONTENT_CONTENT_ORIGIN, under PULP_CONTENT_CONTENT_PATH_PREFIX."""
    from pulp_content.service.urlspace import distribution_url

    current = settings()
    url = distribution_url(current.public_origin, current.content_prefix, doc["base_path"])
    shaped: Doc = {}
    for key, value in doc.items():
        shaped[key] = value
        if key == "base_path":
            shaped["url"] = url
    return shaped


@click.group(cls=CommandGroup)
def distribution() -> None:
    """Base paths in the URL space and what they serve."""


@distribution.command("create")
@click.argument("name")
@click.option(
    "--base-path",
    required=True,
    help="Where it is served below the content prefix, such as fedora/40 (unique; no "
    "distribution's base path may contain another's).",
)
@source_options
@json_option("the distribution")
def distribution_create(
    name: str,
    base_path: str,
    repository_name: str | None,
    version: str | None,
    publication_id: int | None,
    remote_name: str | None,
    guard: str | None,
    as_json: bool,
) -> None:
    """Create a distribution serving exactly one source; prints its URL."""
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
    if as_json:
        echo_record("distribution", dist, with_url)
    else:
        url = with_url({"base_path": dist.base_path})["url"]
        click.echo(f"created distribution {dist.name} at {url}")


@distribution.command("update")
@click.argument("name")
@click.option("--base-path", help="Serve it at this base path instead.")
@source_options
@click.option("--no-guard", is_flag=True, help="Remove the content guard.")
@json_option("the distribution")
def distribution_update(
    name: str,
    base_path: str | None,
    repository_name: str | None,
    version: str | None,
    publication_id: int | None,
    remote_name: str | None,
    guard: str | None,
    no_guard: bool,
    as_json: bool,
) -> None:
    """Change what a distribution serves, where, or its guard."""
    from pulp_content.service.catalog import update_distribution

    dist = update_distribution(
        name,
        base_path=base_path,
        repository=repository_name,
        version=version,
        publication=publication_id,
        remote=remote_name,
        guard=guard,
        clear_guard=no_guard,
    )
    if as_json:
        echo_record("distribution", dist, with_url)
    else:
        click.echo(f"updated distribution {name}")


record_commands(
    distribution,
    "distribution",
    ("NAME", "BASE PATH", "URL"),
    lambda doc: (doc["name"], doc["base_path"], doc["url"]),
    "Delete a distribution (its content stays).",
    shape=with_url,
)
