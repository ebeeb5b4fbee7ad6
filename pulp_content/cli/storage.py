"""`pulp-content storage check [--repair]`: storage against the database."""

from __future__ import annotations

import click

from pulp_content.cli.common import CommandGroup, echo_json, settings


@click.group(cls=CommandGroup)
def storage() -> None:
    """Inspect the artifact storage."""


@storage.command("check")
@click.option(
    "--repair",
    is_flag=True,
    help="Remove files no row names and leftovers of interrupted saves; content whose "
    "file is missing or corrupt becomes lazy again where a remote can supply it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the problems as JSON.")
def storage_check(repair: bool, as_json: bool) -> None:
    """Report rows without files, files without rows and files whose bytes do not match
    their name, one line each; exit status 1 while any is left unrepaired."""
    current = settings()  # set up by `Command` before this runs: the models may import
    from pulp_content.service.audit import check_storage

    problems = check_storage(current, repair)
    if as_json:
        echo_json([problem.as_dict() for problem in problems])
    else:
        for problem in problems:
            click.echo(problem.line())
    left = sum(1 for problem in problems if problem.repaired is None)
    click.echo(f"{len(problems)} problems, {len(problems) - left} repaired", err=True)
    if left:
        raise SystemExit(1)
