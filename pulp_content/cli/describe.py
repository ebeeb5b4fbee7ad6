"""The JSON document `pulp-content resolve --json` prints for a resolution."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pulp_content.service.redact import mask_url
from pulp_content.service.types import (
    Forbidden,
    Listing,
    LocalArtifact,
    NotFound,
    Pulled,
    Redirect,
    RemoteSource,
    Resolution,
)
from pulp_content.service.urlspace import absolute


def action_of(resolution: Resolution, delegate: bool = False) -> str:
    """The `action` name `pulp-content resolve` prints for this resolution."""
    match resolution:
        case LocalArtifact():
            return "delegate" if delegate else "serve_file"
        case RemoteSource():
            return "stream"
        case Listing():
            return "listing"
        case Redirect():
            return "redirect"
        case Forbidden():
            return "forbidden"
        case _:
            return "not_found"


def describe(
    resolution: Resolution, queries: int, delegate: bool = False, origin: str | None = None
) -> dict[str, Any]:
    """The JSON document of `pulp-content resolve --json`; a redirect's location as the
    service sends it (absolute on the configured `origin`)."""
    dist = resolution.distribution
    artifact = resolution.artifact if isinstance(resolution, LocalArtifact) else None
    remotes = resolution.remote_artifacts if isinstance(resolution, RemoteSource) else ()
    doc: dict[str, Any] = {
        "path": resolution.path,
        "distribution": {"name": dist.name, "base_path": dist.base_path} if dist else None,
        "source": resolution.source,
        "relative_path": resolution.relative_path,
        "action": action_of(resolution, delegate),
        "artifact": (
            {
                "sha256": artifact.sha256,
                "size": artifact.size,
                "storage_path": artifact.storage_path,
            }
            if artifact
            else None
        ),
        "remote_artifacts": [
            {
                "remote": r.remote,
                "url": mask_url(r.url),
                "policy": r.policy,
                "size": r.size,
                "sha256": r.digests.get("sha256"),
            }
            for r in remotes
        ],
        "queries": queries,
    }
    match resolution:
        case Redirect(location=loc):
            doc["location"] = absolute(origin, loc)
        case NotFound(reason=why) | Forbidden(reason=why):
            doc["reason"] = why
        case Listing(entries=entries):
            doc["entries"] = [e.name + ("/" if e.is_dir else "") for e in entries]
        case LocalArtifact(pulled=Pulled() as pulled):
            # A pull-through copy: when the upstream last confirmed it, for how long.
            doc["pulled"] = {
                "validated_at": pulled.validated_at.isoformat(),
                "max_age": pulled.max_age,
                "max_stale": pulled.max_stale,
                "mutable": pulled.max_age is not None,
                # What a request now would do: serve it, or revalidate it first.
                "fresh": pulled.fresh(dt.datetime.now(dt.UTC)),
            }
    return doc
