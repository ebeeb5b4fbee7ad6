"""What every command shares: settings, errors as one line, JSON and progress output."""

from __future__ import annotations

import json
import math
import os
import socket
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from pulp_content.service.config import Listen, Settings, load_settings
from pulp_content.service.errors import ContentError


class Command(click.Command):
    """A command that uses the database: the settings are loaded, Django is configured
    and the database is ready before its callback runs, so the callback may import the
    models. (After parsing, so `--help` never touches the database.)"""

    def invoke(self, ctx: click.Context) -> Any:
        settings()
        return super().invoke(ctx)


class CommandGroup(click.Group):
    """A group whose commands use the database (see `Command`)."""

    command_class = Command


class Group(CommandGroup):
    """The root: turns the service's errors into one `Error: ...` line and exit status 1."""

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


def need_extra(module: str, extra: str, option: str) -> None:
    """One `Error:` line, before any work, when `option` needs `module` and the install
    left it out: it comes with an extra of the distribution."""
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise click.ClickException(
            f"{option} needs {module}, not installed: pip install 'pulp-content[{extra}]'"
        )


def settings(may_create: bool = False) -> Settings:
    """The settings, with Django configured and the database ready for use (migrated, or
    a clear error). `may_create`: a brand-new home gets its database (see `ready`)."""
    ctx = click.get_current_context()
    root = ctx.find_root()
    if "settings" not in root.meta:
        from pulp_content.service.database import ready

        loaded = load_settings()
        ready(loaded, may_create=may_create)
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


def read_file_option(path: str | None, hint: str) -> str | None:
    """The text of a PEM file given as option `hint`."""
    if path is None:
        return None
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint=hint) from None
    try:
        return data.decode("ascii")
    except UnicodeDecodeError:
        raise click.BadParameter(f"{path} is not PEM text", param_hint=hint) from None


class Seconds(click.ParamType):
    """A finite, positive number of seconds (`inf` and `nan` parse as floats; refuse them)."""

    name = "seconds"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not math.isfinite(seconds) or seconds <= 0:
            self.fail(f"must be a positive number of seconds, not {value!r}", param, ctx)
        return seconds


SECONDS = Seconds()
# Row ids and version numbers: what a 64-bit integer column holds.
ROW_ID = click.IntRange(0, 2**63 - 1)


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


Doc = dict[str, Any]  # a record, as `show --json` prints it

# What plain output shows for nothing: no value, an empty list or mapping.
NOTHING = "-"
COLUMN_GAP = "  "


def plain(value: Any) -> str:
    """A value as plain output shows it: words, never a Python repr (None, True, {}, [])."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None or (isinstance(value, str | list | tuple | dict) and not value):
        return NOTHING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 30.0 seconds reads as 30
    if isinstance(value, dict):
        return ", ".join(f"{key}={plain(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(plain(item) for item in value)
    return str(value)


def plain_lines(doc: dict[str, Any], indent: str = "") -> list[str]:
    """`key: value` lines; a mapping, or a list of mappings, below its key, indented."""
    lines: list[str] = []
    for key, value in doc.items():
        if isinstance(value, dict) and value:
            lines += [f"{indent}{key}:", *plain_lines(value, indent + "  ")]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines.append(f"{indent}{key}:")
            for item in value:
                first, *rest = plain_lines(item, indent + "    ") or [NOTHING]
                lines += [f"{indent}  - {first.lstrip()}", *rest]
        else:
            lines.append(f"{indent}{key}: {plain(value)}")
    return lines


def table_lines(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    """A header row and one row per item, in columns padded to their widest cell."""
    cells = [list(header), *([plain(value) for value in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    return [
        COLUMN_GAP.join(
            [*(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True)), row[-1]]
        )
        for row in cells
    ]


def emit_list(
    docs: list[dict[str, Any]],
    as_json: bool,
    header: tuple[str, ...],
    row: Callable[[dict[str, Any]], tuple[Any, ...]],
) -> None:
    """A `list` command's output: JSON, or a header row and one row per item."""
    if as_json:
        echo_json(docs)
        return
    for line in table_lines(header, [row(doc) for doc in docs]):
        click.echo(line)


def emit_one(doc: dict[str, Any], as_json: bool) -> None:
    """A `show`, `create` or `update` command's output: JSON, or `key: value` lines."""
    if as_json:
        echo_json(doc)
        return
    for line in plain_lines(doc):
        click.echo(line)


def json_option(what: str) -> Callable[[Any], Any]:
    """`--json`: print the record(s) as JSON instead of plain text."""
    return click.option("--json", "as_json", is_flag=True, help=f"Print {what} as JSON.")


def echo_record(kind: str, row: Any, shape: Callable[[Doc], Doc] | None = None) -> None:
    """What `create` and `update` print with --json: the record, as `show --json` does."""
    from pulp_content.service.catalog import record_as_dict

    doc = record_as_dict(kind, row)
    emit_one(shape(doc) if shape else doc, as_json=True)


def free_port(host: str = "127.0.0.1") -> int:
    """A port nobody listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def split_bind(bind: str, allow_zero: bool = False) -> tuple[str, int]:
    """`--bind HOST:PORT` as (host, port); an IPv6 host may be bracketed."""
    host, sep, port = bind.rpartition(":")
    lowest = 0 if allow_zero else 1
    if not sep or not port.isdigit() or not lowest <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {bind!r}", param_hint="--bind")
    return host.strip("[]") or "127.0.0.1", int(port)


# sockaddr_un's sun_path: 108 bytes on Linux, one of them the terminating NUL.
UNIX_PATH_MAX = 107


def parse_bind(bind: str) -> Listen:
    """`--bind HOST:PORT` or `--bind unix:PATH` (a relative path is taken from here)."""
    if bind.startswith("unix:"):
        path = bind.removeprefix("unix:")
        if not path:
            raise click.BadParameter("expected unix:PATH, got 'unix:'", param_hint="--bind")
        return Listen(path=os.path.abspath(path))
    host, port = split_bind(bind)
    return Listen(host, port)


ANY_ADDRESS = frozenset({"0.0.0.0", "::", ""})


def peer_url_of(listen: Listen) -> str | None:
    """Where other hosts reach a service bound to `listen`: its address, when it is one
    they can use (not a wildcard, a unix socket or a socket systemd passed)."""
    if listen.path is not None or listen.fd is not None or listen.host in ANY_ADDRESS:
        return None
    host = f"[{listen.host}]" if ":" in listen.host else listen.host
    return f"http://{host}:{listen.port}"


# sd_listen_fds(3): passed sockets begin at descriptor 3.
SD_LISTEN_FDS_START = 3


def activated(listen: Listen, workers: int) -> Listen:
    """`listen` on the socket systemd passed, if it passed one (socket activation:
    $LISTEN_PID is this process); as it was otherwise."""
    if os.environ.get("LISTEN_PID") != str(os.getpid()):
        return listen
    count = os.environ.get("LISTEN_FDS", "0")
    if count != "1":
        raise click.ClickException(
            f"systemd passed {count} sockets: pulp-content serves one (one ListenStream=)"
        )
    if workers == 1:  # gunicorn reads and clears them itself (the same process, exec'ed)
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    return Listen(listen.host, listen.port, listen.path, fd=SD_LISTEN_FDS_START)


def check_bind(listen: Listen) -> None:
    """A one-line error now if the service could not listen there."""
    if listen.fd is not None:
        return  # systemd listens there already, for us
    if listen.path is None:
        check_listen(listen.host, listen.port)
    else:
        check_unix_listen(listen.path)


def check_unix_listen(path: str) -> None:
    """A one-line error now if a unix socket cannot be made at `path`: too long a path, a
    directory that is missing or closed to us, something else than a socket there, or a
    server listening there already (both servers replace a socket file they find, a live
    one's too). A stale socket file (nobody answers) is removed, as the servers would."""
    where = f"unix:{path}"
    if len(os.fsencode(path)) > UNIX_PATH_MAX:
        raise click.ClickException(
            f"cannot listen on {where}: the path is longer than a unix socket's "
            f"{UNIX_PATH_MAX} bytes"
        )
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            if _answers(path):
                raise click.ClickException(f"cannot listen on {where}: a server listens there")
            os.unlink(path)
        else:
            raise click.ClickException(f"cannot listen on {where}: it exists and is not a socket")
    except FileNotFoundError:
        pass
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {where}: {_reason(exc)}") from None
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(path)
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {where}: {_reason(exc)}") from None
        os.unlink(path)


def _answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _reason(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return reason[:1].lower() + reason[1:]


def check_listen(host: str, port: int) -> None:
    """A one-line error now if HOST:PORT cannot be listened on (in use, no such address),
    rather than a traceback from the server later."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as sock:
                # As the servers do; without it a port in TIME_WAIT looked taken.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
    except OSError as exc:
        raise click.ClickException(listen_error(host, port, exc)) from None


def listen_error(host: str, port: int, exc: OSError) -> str:
    return f"cannot listen on {host}:{port}: {_reason(exc)}"
