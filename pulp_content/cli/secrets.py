"""`pulp-content secrets`: the key that encrypts secrets at rest."""

from __future__ import annotations

import click

from pulp_content.cli.common import CommandGroup


@click.group(cls=CommandGroup)
def secrets() -> None:
    """The key file that encrypts remote passwords, client keys, header values and
    content guard secrets ($PULP_CONTENT_SECRET_KEY_FILE, default
    $PULP_CONTENT_HOME/keys/secret.key)."""


@secrets.command("rotate")
def rotate() -> None:
    """Re-encrypt every stored secret under a new key, which replaces the old one."""
    from pulp_content.service.fields import keyring
    from pulp_content.service.secretdata import rotate as run

    ring = keyring()
    rows = run(ring)
    click.echo(f"re-encrypted {rows} rows under a new key in {ring.path}")
    click.echo("copy that file to every other host that uses this database")
