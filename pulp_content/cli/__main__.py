from pulp_content.cli.main import cli

# The name users type, whichever way it was started: usage lines and shell completion
# (_PULP_CONTENT_COMPLETE) are the same for `python -m pulp_content.cli`.
cli(prog_name="pulp-content")
