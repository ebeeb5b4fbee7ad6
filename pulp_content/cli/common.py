"""What every command shares: settings, errors as one line, JSON and progress output."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pulp_content.service.config import Settings, load_settings
from pulp_content.service.errors import ContentError


class Group(click.Group):
    """Turns the service's errors into one `Error: ...` line and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ContentError as exc:
            raise click.ClickException(str(exc)) from None
        except Exception as exc:
            from django.db import DatabaseError

            if isinstance(exc, DatabaseError):
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                raise click.ClickException(f"database error: {first}") from None
            raise


def settings() -> Settings:
    """The settings, with the database ready for use (migrated, or a clear error)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "settings" not in root.meta:
        from pulp_content.service.database import ready

        loaded = load_settings()
        ready(loaded)
        root.meta["settings"] = loaded
    result: Settings = root.meta["settings"]
    return result


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str))


def parse_headers(values: tuple[str, ...]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition(":")
        if not sep or not name.strip():
            raise click.BadParameter(
                f"expected 'NAME: VALUE', got {value!r}", param_hint="--header"
            )
        headers[name.strip()] = text.strip()
    return headers


class ByteSize(click.ParamType):
    """A number of bytes: `1048576`, or with a binary suffix, `512K`, `100M`, `2G`."""

    name = "size"
    UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip().upper().removesuffix("B").removesuffix("I")
        number, unit = (text[:-1], text[-1]) if text[-1:] in self.UNITS else (text, "")
        if not number.isdigit():
            self.fail(f"{value!r} is not a size such as 1048576, 512K, 100M or 2G", param, ctx)
        return int(number) * self.UNITS[unit]


def read_file_option(path: str | None) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}") from None


def progress_callbacks() -> tuple[Callable[[int], None], Callable[[int], None], Callable[[], None]]:
    """A click progress bar on a terminal, nothing otherwise: (on_total, advance, close)."""
    state: dict[str, Any] = {}

    def on_total(total: int) -> None:
        if total and sys.stderr.isatty():
            bar = click.progressbar(length=total, label="downloading", file=sys.stderr)
            state["bar"] = bar.__enter__()

    def advance(n: int) -> None:
        if "bar" in state:
            state["bar"].update(n)

    def close() -> None:
        if "bar" in state:
            state.pop("bar").__exit__(None, None, None)

    return on_total, advance, close


def emit_list(
    docs: list[dict[str, Any]], as_json: bool, line: Callable[[dict[str, Any]], str]
) -> None:
    """A `list` command's output: JSON, or one line per item."""
    if as_json:
        echo_json(docs)
        return
    for doc in docs:
        click.echo(line(doc))


def emit_one(doc: dict[str, Any], as_json: bool) -> None:
    """A `show` command's output: JSON, or `key: value` lines."""
    if as_json:
        echo_json(doc)
        return
    for key, value in doc.items():
        click.echo(f"{key}: {value}")
