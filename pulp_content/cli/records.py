"""The `list`, `show` and `delete` commands every catalog group has, in one shape: each
parses its options and calls one function of `service.catalog`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pulp_content.cli.common import Doc, emit_list, emit_one, json_option


def record_commands(
    group: click.Group,
    kind: str,
    header: tuple[str, ...],
    row: Callable[[Doc], tuple[Any, ...]],
    delete_help: str | None,
    show: bool = True,
    shape: Callable[[Doc], Doc] | None = None,
) -> None:
    """Add `list` (a `header` row, then one `row` per record, or --json), `show NAME` and
    `delete NAME` for the records of `kind`; `delete_help` None: records of this kind are
    not deleted. `shape`: what the CLI adds to a record (a distribution's URL)."""

    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    shaped = shape or (lambda doc: doc)

    @group.command("list", help=f"List {plural}, one per line under a header row.")
    @json_option("them")
    def list_records(as_json: bool) -> None:
        from pulp_content.service.catalog import list_records as run

        emit_list([shaped(doc) for doc in run(kind)], as_json, header, row)

    if show:

        @group.command("show", help=f"Show one {kind}.")
        @click.argument("name")
        @json_option("it")
        def show_record(name: str, as_json: bool) -> None:
            from pulp_content.service.catalog import show_record as run

            emit_one(shaped(run(kind, name)), as_json)

    if delete_help is not None:

        @group.command("delete", help=delete_help)
        @click.argument("name")
        def delete_record(name: str) -> None:
            from pulp_content.service.catalog import delete_record as run

            run(kind, name)
            click.echo(f"deleted {kind} {name}")
