"""The `list`, `show` and `delete` commands every catalog group has, in one shape: each
parses its options and calls one function of `service.catalog`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from pulp_content.cli.common import emit_list, emit_one


def record_commands(
    group: click.Group,
    kind: str,
    line: Callable[[dict[str, Any]], str],
    delete_help: str | None,
    show: bool = True,
) -> None:
    """Add `list` (one `line` per record, or --json), `show NAME` and `delete NAME` for
    the records of `kind`; `delete_help` None: records of this kind are not deleted."""

    plural = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"

    @group.command("list", help=f"List {plural}.")
    @click.option("--json", "as_json", is_flag=True, help="Print them as JSON.")
    def list_records(as_json: bool) -> None:
        from pulp_content.service.catalog import list_records as run

        emit_list(run(kind), as_json, line)

    if show:

        @group.command("show", help=f"Show one {kind}.")
        @click.argument("name")
        @click.option("--json", "as_json", is_flag=True, help="Print it as JSON.")
        def show_record(name: str, as_json: bool) -> None:
            from pulp_content.service.catalog import show_record as run

            emit_one(run(kind, name), as_json)

    if delete_help is not None:

        @group.command("delete", help=delete_help)
        @click.argument("name")
        def delete_record(name: str) -> None:
            from pulp_content.service.catalog import delete_record as run

            run(kind, name)
            click.echo(f"deleted {kind} {name}")
