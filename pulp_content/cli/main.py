"""`pulp-content`: each command parses its options and calls one library function."""

from __future__ import annotations

import os
import sys

import click

from pulp_content.cli.bench import bench
from pulp_content.cli.common import (
    Group,
    activated,
    check_bind,
    check_listen,
    emit_one,
    free_port,
    parse_bind,
    parse_headers,
    peer_url_of,
    settings,
    split_bind,
)
from pulp_content.cli.distribution import distribution
from pulp_content.cli.fixture import fixture
from pulp_content.cli.guard import guard, sign
from pulp_content.cli.publication import publication
from pulp_content.cli.reclaim import reclaim
from pulp_content.cli.remote import remote
from pulp_content.cli.repository import repository
from pulp_content.cli.secrets import secrets
from pulp_content.cli.storage import storage
from pulp_content.service.config import DEFAULT_BIND, load_settings


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pulp-content")
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, exists=True),
    envvar="PULP_CONTENT_CONFIG",
    help="A TOML settings file; its keys mirror the PULP_CONTENT_* environment variables "
    "(home, database_url, ...), which win over it.",
)
def cli(config_file: str | None) -> None:
    """Serve Pulp repositories: stored artifacts and lazy (on-demand) content in one service.

    Data lives in $PULP_CONTENT_HOME (default ~/.local/share/pulp-content);
    $PULP_CONTENT_DATABASE_URL selects PostgreSQL (postgres://user@host:port/db).
    """
    if config_file:
        from pulp_content.service.config import apply_config_file

        apply_config_file(config_file, os.environ)


@cli.command(cls=click.Command)
def migrate() -> None:
    """Create or upgrade the database (the only command that creates one, but for `serve`
    on a brand-new home)."""
    from pulp_content.service.database import migrate as run

    applied = run(load_settings())
    click.echo(f"applied {len(applied)} migrations" if applied else "nothing to migrate")


@cli.command(cls=click.Command)
@click.option(
    "--bind",
    default=DEFAULT_BIND,
    show_default=True,
    help="HOST:PORT to listen on, or unix:PATH for a unix socket (merged design; its mode "
    "follows the umask). A socket systemd passes (socket activation) is used instead.",
)
@click.option(
    "--design",
    type=click.Choice(["merged", "redirect"]),
    default="merged",
    show_default=True,
    help="merged: this service. redirect: the old content app (gunicorn) plus a "
    "separate streamer, for comparison.",
)
@click.option(
    "--streamer-port",
    type=click.IntRange(1, 65535),
    help="redirect design: the streamer's port (default: a free one).",
)
@click.option(
    "--web-server",
    type=click.Choice(["django", "apache", "nginx"]),
    default="django",
    show_default=True,
    help="redirect design: CONTENT.WEB_SERVER, how stored files are handed out.",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="merged design: worker processes on the one port (gunicorn's aiohttp worker).",
)
@click.option(
    "--delegate",
    type=click.Choice(["nginx", "apache"]),
    help="Hand stored files to the front web server: X-Accel-Redirect (nginx) or "
    "X-Sendfile (apache). Lazy content still streams through the service.",
)
@click.option(
    "--delegate-prefix",
    help="nginx: the internal location that maps onto the storage directory "
    "(default /pulp/storage/).",
)
@click.option(
    "--log-format",
    type=click.Choice(["plain", "json"]),
    help="Access log lines as text (default) or one JSON object each.",
)
@click.option(
    "--offline",
    is_flag=True,
    help="Never contact an upstream: pull-through and lazy content comes from storage "
    "only, however old (with an Age header); what is not stored answers 504.",
)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="The least severe lines logged (default info; the access log is info, so "
    "warning turns it off).",
)
@click.option(
    "--no-redirect",
    is_flag=True,
    help="redirect design: REDIRECT.ENABLED false (lazy content answers 404).",
)
def serve(
    bind: str,
    design: str,
    streamer_port: int | None,
    web_server: str,
    workers: int,
    delegate: str | None,
    delegate_prefix: str | None,
    log_format: str | None,
    offline: bool,
    log_level: str | None,
    no_redirect: bool,
) -> None:
    """Serve content under the content prefix, /pulp/content/ unless
    PULP_CONTENT_CONTENT_PATH_PREFIX says otherwise (and /metrics, /livez and /readyz
    beside it)."""
    listen = activated(parse_bind(bind), workers)
    if listen.fd is not None and design == "redirect":
        raise click.ClickException("socket activation serves the merged design only")
    if listen.path is not None and design == "redirect":
        raise click.BadParameter("unix:PATH serves the merged design only", param_hint="--bind")
    check_bind(listen)
    if streamer_port is not None:
        check_listen(listen.host, streamer_port)
    # Through the environment, so gunicorn's workers see them too.
    if delegate:
        os.environ["PULP_CONTENT_DELEGATE"] = delegate
    if delegate_prefix:
        os.environ["PULP_CONTENT_DELEGATE_PREFIX"] = delegate_prefix
    if log_format:
        os.environ["PULP_CONTENT_LOG_FORMAT"] = log_format
    if offline:
        os.environ["PULP_CONTENT_OFFLINE"] = "1"
    if log_level:
        os.environ["PULP_CONTENT_LOG_LEVEL"] = log_level
    peer_url = peer_url_of(listen)
    if peer_url and not os.environ.get("PULP_CONTENT_PEER_URL"):
        os.environ["PULP_CONTENT_PEER_URL"] = peer_url  # where other hosts reach this one
    # Django is configured before the service's modules load; a brand-new home gets its
    # database, so `pulp-content serve` works on a fresh machine.
    current = settings(may_create=True)
    if design == "redirect" and current.s3_location is not None:
        # The baseline is Pulp's content app of 2018, which read files from a disk.
        raise click.ClickException("the redirect design serves a filesystem storage only")
    from pulp_content.service.secretdata import verify_key

    verify_key()  # a missing or wrong key file is one line now, not a failed download later
    if design == "redirect":
        from pulp_content.service.legacy.run import run_redirect

        sys.exit(
            run_redirect(
                current,
                listen.host,
                listen.port,
                streamer_port or free_port(listen.host),
                web_server,
                redirect=not no_redirect,
            )
        )
    if workers > 1:
        from pulp_content.service.workers import exec_workers

        exec_workers(current, listen, workers)
    from pulp_content.service.run import run_merged

    run_merged(current, listen)


@cli.command("legacy-streamer", hidden=True)
@click.option("--bind", required=True, help="HOST:PORT to listen on.")
def legacy_streamer(bind: str) -> None:
    """The redirect design's streamer process (started by `serve --design redirect`)."""
    host, port = split_bind(bind)
    check_listen(host, port)
    current = settings()
    from aiohttp import web

    from pulp_content.service.accesslog import log as access_log
    from pulp_content.service.legacy.streamer import create_streamer

    web.run_app(create_streamer(current), host=host, port=port, access_log=access_log, print=None)


@cli.command()
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print the resolution as JSON.")
@click.option(
    "--header",
    "headers",
    multiple=True,
    metavar="'NAME: VALUE'",
    help="A request header to resolve with (content guards look at them).",
)
@click.option(
    "--peer",
    default="127.0.0.1",
    show_default=True,
    help="The client address the request comes from: proxy headers such as X-Client-Cert "
    "count only from a trusted proxy (PULP_CONTENT_TRUSTED_PROXIES).",
)
def resolve(path: str, as_json: bool, headers: tuple[str, ...], peer: str) -> None:
    """Show what the service does for a URL path such as /pulp/content/base/file.iso."""
    current = settings()  # set up by `Command` before this runs: the models may import
    from pulp_content.cli.describe import describe
    from pulp_content.service import queries
    from pulp_content.service.proxies import is_trusted_proxy
    from pulp_content.service.resolve import resolve_now

    from_proxy = is_trusted_proxy(peer, current.trusted_proxies)
    with queries.counting() as counter:
        resolution = resolve_now(path, parse_headers(headers), current.content_prefix, from_proxy)
    delegate = current.delegate is not None
    doc = describe(resolution, counter.count, delegate, current.content_origin)
    emit_one(doc, as_json)


for command in (
    remote,
    repository,
    publication,
    distribution,
    guard,
    sign,
    secrets,
    storage,
    reclaim,
    fixture,
    bench,
):
    cli.add_command(command)
