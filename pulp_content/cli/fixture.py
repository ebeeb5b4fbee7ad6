"""`pulp-content fixture serve`: the fixture remote as a standalone upstream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal

import click

from pulp_content.cli.common import check_listen, listen_error, need_extra, split_bind
from pulp_content.fixtures.presets import PRESETS

# Beside the service's 24816: the same URLs from one run to the next.
DEFAULT_BIND = "127.0.0.1:24817"


def parse_repository(text: str) -> tuple[str, int, int, int]:
    """NAME:COUNT:SIZE[:SEED] -> its parts."""
    parts = text.split(":")
    if len(parts) not in (3, 4) or not all(p.isdigit() for p in parts[1:]) or not parts[0]:
        raise click.BadParameter(
            f"expected NAME:COUNT:SIZE[:SEED], got {text!r}", param_hint="--repository"
        )
    seed = int(parts[3]) if len(parts) == 4 else 0
    return parts[0], int(parts[1]), int(parts[2]), seed


@click.group()
def fixture() -> None:
    """The fixture remote: an upstream that can misbehave on purpose."""


@fixture.command("serve")
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    help="HOST:PORT; port 0 picks a free one. The default stays the same from run to run, "
    "so the URLs remotes were created with keep working after a restart.",
)
@click.option(
    "--preset",
    "presets",
    multiple=True,
    type=click.Choice(sorted(PRESETS)),
    help="Repositories to serve (repeatable).",
)
@click.option(
    "--repository",
    "repositories",
    multiple=True,
    metavar="NAME:COUNT:SIZE[:SEED]",
    help="A generated repository of COUNT files of SIZE bytes (repeatable).",
)
@click.option(
    "--tls",
    "ca_out",
    type=click.Path(dir_okay=False, writable=True),
    help="Serve HTTPS with a certificate from a CA made at start; write the CA's PEM here "
    "(needs trustme: pip install 'pulp-content[fixtures]').",
)
@click.option(
    "--client-cert",
    "client_out",
    type=click.Path(dir_okay=False, writable=True),
    help="With --tls: answer only clients presenting a certificate signed by the CA; write "
    "one here and its key to the same name plus .key (for remote create --client-cert "
    "and --client-key).",
)
def fixture_serve(
    bind: str,
    presets: tuple[str, ...],
    repositories: tuple[str, ...],
    ca_out: str | None,
    client_out: str | None,
) -> None:
    """Serve generated repositories and print the PULP_MANIFEST URL of each."""

    if client_out is not None and ca_out is None:
        raise click.UsageError("--client-cert needs --tls")
    if ca_out is not None:
        need_extra("trustme", "fixtures", "--tls")
    host, port = split_bind(bind, allow_zero=True)
    specs = [parse_repository(text) for text in repositories]
    chosen = list(presets) or ([] if specs else ["small"])
    try:
        check_listen(host, port)
    except click.ClickException as exc:
        if bind != DEFAULT_BIND:
            raise
        raise click.ClickException(f"{exc.message} (--bind HOST:PORT to use another)") from None
    asyncio.run(_serve(host, port, chosen, specs, ca_out, client_out))


async def _serve(
    host: str,
    port: int,
    presets: list[str],
    specs: list[tuple[str, int, int, int]],
    ca_out: str | None,
    client_out: str | None,
) -> None:
    from pulp_content.fixtures.presets import load
    from pulp_content.fixtures.remote import FixtureRemote, generate

    remote = FixtureRemote(host, port, tls=ca_out is not None, client_certs=client_out is not None)
    try:
        await remote.start()
    except OSError as exc:  # taken since check_listen looked
        raise click.ClickException(listen_error(host, port, exc)) from None
    try:
        if ca_out is not None and remote.ca_pem is not None:
            write_file(ca_out, remote.ca_pem)
            click.echo(f"CA certificate written to {ca_out} (use: remote create --ca-cert)")
        if client_out is not None:
            cert, key = remote.client_cert()
            write_file(client_out, cert)
            write_file(client_out + ".key", key, private=True)
            click.echo(
                f"client certificate written to {client_out}, its key to {client_out}.key "
                "(use: remote create --client-cert --client-key)"
            )
        urls = load(remote, presets)
        for name, count, size, seed in specs:
            urls.append(remote.add_repository(name, generate(name, count, (size,), seed)))
        click.echo(f"fixture remote on {remote.base_url} (stats: {remote.base_url}/_stats)")
        for url in urls:
            click.echo(url)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        with contextlib.suppress(Exception):
            await remote.stop()


def write_file(path: str, data: bytes, private: bool = False) -> None:
    """Write `data` to `path` (mode 0600 if private), or a one-line error."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
        with open(fd, "wb") as out:
            out.write(data)
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror}") from None
