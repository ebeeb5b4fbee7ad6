"""pulp-content: Pulp 3's content app and streamer merged into one aiohttp service.

The one import namespace the wheel installs: `pulp_content.service` (the content
service, its models and the old redirect design), `pulp_content.cli` (the
`pulp-content` command) and `pulp_content.fixtures` (the fixture remote and the bench).
"""
