"""`pulp-content storage check [--repair]`: storage against the database;
`pulp-content storage copy --to URL`: every artifact into another storage."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click

from pulp_content.cli.common import CommandGroup, echo_json, settings

if TYPE_CHECKING:  # the models import only once `settings()` has configured Django
    from pulp_content.service.storagecopy import Tally


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


@storage.command("copy")
@click.option(
    "--to",
    "url",
    required=True,
    metavar="URL",
    help="Where to: file:///absolute/path or s3://BUCKET[/PREFIX] (AWS_* variables as for "
    "the service's own bucket).",
)
@click.option(
    "--verify-existing",
    is_flag=True,
    help="Re-read the artifacts already at the destination and check their digests "
    "(without it, the right size is enough); wrong ones are copied again.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def storage_copy(url: str, verify_existing: bool, as_json: bool) -> None:
    """Copy every artifact from the configured storage to another one, under the same
    names, checking each file's sha256 and size against its row as it is copied.

    Artifacts already at the destination with the right size are skipped, so an
    interrupted copy finishes when run again. The database is not changed: once the
    copy reports no problems, set PULP_CONTENT_STORAGE_URL=URL (TOML storage_url) and
    restart the service. Problems are listed one a line; the exit status is then 1."""
    current = settings()  # set up by `Command` before this runs: the models may import
    from pulp_content.service.storagecopy import (
        Tally,
        copy_storage,
        destination_settings,
        totals,
    )

    destination = destination_settings(current, url)
    tally = Tally(destination=url)
    try:
        with _progress(totals()[1]) as advance:
            copy_storage(current, destination, tally, verify_existing, advance)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {_summary(tally)}; run it again to copy the rest", err=True)
        raise SystemExit(130) from None
    if as_json:
        echo_json(tally.as_dict())
    else:
        for problem in tally.problems:
            click.echo(problem.line())
    click.echo(_summary(tally), err=True)
    if tally.problems:
        click.echo(
            "the database is unchanged; fix the problems (`pulp-content storage check` "
            "reports them at the source) and run the copy again before switching",
            err=True,
        )
        raise SystemExit(1)
    click.echo(
        f"the database is unchanged: now set PULP_CONTENT_STORAGE_URL={url} and restart "
        "the service",
        err=True,
    )


def _summary(tally: Tally) -> str:
    checked = f", {tally.verified} verified" if tally.verified else ""
    replaced = f", {tally.replaced} of them replacing wrong bytes" if tally.replaced else ""
    return (
        f"{tally.copied} copied ({tally.copied_bytes} bytes){replaced}, "
        f"{tally.present} already there{checked}, {len(tally.problems)} problems"
    )


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar of bytes on stderr when it is a terminal; nothing otherwise."""
    if not total or not sys.stderr.isatty():
        yield lambda n: None
        return
    with click.progressbar(length=total, label="copying", file=sys.stderr) as bar:
        yield bar.update
