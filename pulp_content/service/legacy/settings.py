"""The 2018 content app's settings: CONTENT = {HOST, WEB_SERVER, REDIRECT: {...}}."""

from __future__ import annotations

import json
import os
from typing import Any

ENV = "PULP_CONTENT_LEGACY_CONTENT"
WEB_SERVERS = ("django", "apache", "nginx")


def default_content(streamer_port: int, host: str = "127.0.0.1") -> dict[str, Any]:
    return {
        "HOST": None,
        "WEB_SERVER": "django",
        "REDIRECT": {
            "HOST": host,
            "PORT": streamer_port,
            "PATH_PREFIX": "/streamer/",
            "ENABLED": True,
        },
    }


def content_from_env() -> dict[str, Any]:
    """CONTENT as the `serve --design redirect` command passed it to the WSGI process."""
    content: dict[str, Any] = json.loads(os.environ[ENV])
    if content.get("WEB_SERVER") not in WEB_SERVERS:
        raise ValueError(f"CONTENT.WEB_SERVER must be one of {WEB_SERVERS}")
    return content
