from pulp_content_cli.main import cli

cli()
