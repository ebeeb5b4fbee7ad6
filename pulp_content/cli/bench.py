"""`pulp-content bench`: the merged design against the old redirect design."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import click

from pulp_content.cli.common import need_extra

if TYPE_CHECKING:
    from pulp_content.fixtures.bench import BenchConfig


@click.command()
@click.option("--quick", is_flag=True, help="Fewer, smaller downloads (under 2 minutes).")
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the results as JSON here.",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write a PNG chart here (needs matplotlib: pip install 'pulp-content[bench]').",
)
@click.option(
    "--design",
    type=click.Choice(["merged", "redirect", "both"]),
    default="both",
    show_default=True,
    help="Which designs to measure: this service, the old redirect design, or both.",
)
@click.option("--requests", type=click.IntRange(1), help="Downloads per scenario.")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    help="Clients asking for one artifact at once (concurrent scenario).",
)
@click.option("--size", type=click.IntRange(1), help="Bytes per artifact.")
@click.option(
    "--repeat",
    type=click.IntRange(1),
    default=1,
    show_default=True,
    help="Whole runs (designs taking turns, fresh data each): the figures are their "
    "medians; from 2 on, a warning marks differences smaller than the spread between runs.",
)
def bench(
    quick: bool,
    json_path: Path | None,
    plot_path: Path | None,
    design: str,
    requests: int | None,
    concurrency: int | None,
    size: int | None,
    repeat: int,
) -> None:
    """Measure both designs on the same data, side by side, in one run.

    Uses SQLite in temporary homes, or, when PULP_CONTENT_DATABASE_URL names a
    PostgreSQL server, databases it creates and drops there.
    """
    if plot_path is not None:
        need_extra("matplotlib", "bench", "--plot")
    from pulp_content.fixtures.bench import DESIGNS, SCENARIOS, BenchConfig, run_bench
    from pulp_content.fixtures.report import plot, table

    overrides = {
        k: v
        for k, v in {"requests": requests, "concurrency": concurrency, "size": size}.items()
        if v is not None
    }
    url = os.environ.get("PULP_CONTENT_DATABASE_URL", "")
    postgres = url if url.startswith(("postgres://", "postgresql://")) else None
    designs = DESIGNS if design == "both" else (design,)
    factory: Callable[..., BenchConfig] = BenchConfig.quick if quick else BenchConfig
    config = factory(designs=designs, postgres=postgres, repeat=repeat, **overrides)
    steps = repeat * len(designs) * (len(SCENARIOS) + 1)
    with click.progressbar(length=steps, label="benchmarking", file=sys.stderr) as bar:
        doc, outcomes = run_bench(config, lambda _: bar.update(1))
    click.echo(table(doc))
    if json_path is not None:
        json_path.write_text(json.dumps(doc, indent=2) + "\n")
        click.echo(f"\nwrote {json_path}")
    if plot_path is not None:
        plot(outcomes, plot_path, doc)
        click.echo(f"wrote {plot_path}")
