"""`pulp-content reclaim`: remove the stored files of lazily fetched content."""

from __future__ import annotations

import click

from pulp_content.cli.common import Command, echo_json, settings


@click.command(cls=Command)
@click.option("--remote", "remote_name", metavar="NAME", help="Only content from this remote.")
@click.option(
    "--older-than",
    "older_than",
    type=click.FloatRange(min=0),
    metavar="DAYS",
    help="Only artifacts last served (or fetched) more than DAYS days ago.",
)
@click.option("--dry-run", is_flag=True, help="Say what would go; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print what went as JSON.")
def reclaim(
    remote_name: str | None, older_than: float | None, dry_run: bool, as_json: bool
) -> None:
    """Remove the stored files of on_demand and pull-through artifacts that no immediate
    content needs; they become lazy again, and a later request fetches them anew. A file
    being downloaded or saved is left alone."""
    current = settings()  # set up by `Command` before this runs: the models may import
    from pulp_content.service.catalog import get_named
    from pulp_content.service.models import Remote
    from pulp_content.service.reclaim import reclaim_space

    remote_id = get_named(Remote, remote_name).pk if remote_name is not None else None
    outcome = reclaim_space(current, remote_id, older_than, dry_run)
    if as_json:
        echo_json(outcome.as_dict())
        return
    for candidate in outcome.reclaimed:
        click.echo(f"{candidate.file} {candidate.size}")
    verb = "would reclaim" if dry_run else "reclaimed"
    busy = f", {outcome.busy} skipped (being downloaded or saved)" if outcome.busy else ""
    click.echo(f"{verb} {len(outcome.reclaimed)} artifacts, {outcome.size} bytes{busy}", err=True)
