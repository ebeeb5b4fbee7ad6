from pulp_content.cli.main import cli

cli()
