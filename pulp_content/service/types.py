"""The values the service passes between its parts: what a path resolves to, and the
references it carries. Nothing here imports Django or aiohttp (a test imports this module
with no settings), so serving, streaming and the CLI share it without the ORM."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pulp_content.service.freshness import age_of
from pulp_content.service.remoteconfig import RemoteConfig

# The digests an artifact and a remote artifact can carry (columns of both tables).
DIGESTS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")


@dataclass(frozen=True)
class Refusal:
    """Why a guard refused; `status` is 401 (credentials may help) or 403, or 429/503
    with `retry_after` seconds when password checks are limited."""

    reason: str
    status: int = 403
    challenge: str | None = None
    retry_after: int | None = None


@dataclass(frozen=True)
class PasswordCheck:
    """A basic-auth attempt still to be hashed: `stored` is the user's hash, or a dummy
    one of the same cost for an unknown user (equal work: no user enumeration)."""

    user: str
    password: str = field(repr=False)
    stored: str = field(repr=False)
    known: bool
    iterations: int
    challenge: str
    cache_key: str = field(repr=False)


@dataclass(frozen=True)
class DistributionRef:
    name: str
    base_path: str


@dataclass(frozen=True)
class ArtifactRef:
    """A stored artifact: `storage_path` is relative to the storage root."""

    sha256: str
    size: int
    storage_path: str


@dataclass(frozen=True)
class Absent:
    """The upstream answered 404 for a pull-through URL; every process takes that answer,
    without asking again, until `until`."""

    until: dt.datetime


@dataclass(frozen=True)
class RemoteRef:
    """One place a lazy artifact can be downloaded from (id None: pull-through, not saved yet)."""

    id: int | None
    config: RemoteConfig
    url: str
    size: int | None
    digests: Mapping[str, str]
    failed_at: dt.datetime | None = None

    @property
    def remote(self) -> str:
        return self.config.name

    @property
    def policy(self) -> str:
        return self.config.policy


@dataclass(frozen=True)
class Entry:
    """A line of a directory listing."""

    name: str
    is_dir: bool
    size: int | None = None
    modified: dt.datetime | None = None


@dataclass(frozen=True)
class Resolved:
    """What every answer carries: where the path led."""

    path: str
    distribution: DistributionRef | None = None
    source: str | None = None
    relative_path: str | None = None


@dataclass(frozen=True)
class Pulled:
    """A stored pull-through copy: where it came from, when the upstream last confirmed
    it, and for how long that holds (`max_age` None: immutable, never revalidated;
    `max_stale`: seconds past that it is still served while the upstream fails)."""

    remote_artifact: RemoteRef
    content_artifact_id: int
    validated_at: dt.datetime
    max_age: int | None
    max_stale: int
    etag: str | None = None
    last_modified: str | None = None

    def fresh(self, now: dt.datetime) -> bool:
        """Whether the copy may be served without asking the upstream."""
        return self.max_age is None or age_of(self.validated_at, now) < self.max_age

    def servable_stale(self, now: dt.datetime) -> bool:
        """Whether the copy may still be served when the upstream cannot confirm it."""
        if self.max_age is None:
            return True  # immutable: always
        return age_of(self.validated_at, now) <= self.max_age + self.max_stale


@dataclass(frozen=True)
class LocalArtifact(Resolved):
    artifact: ArtifactRef = field(default_factory=lambda: ArtifactRef("", 0, ""))
    last_modified: dt.datetime | None = None
    pulled: Pulled | None = None  # set for a pull-through copy


@dataclass(frozen=True)
class RemoteSource(Resolved):
    """A lazy artifact: not in storage, downloadable from `remote_artifacts` in order."""

    content_artifact_id: int | None = None
    remote_artifacts: tuple[RemoteRef, ...] = ()
    size: int | None = None
    sha256: str | None = None
    last_modified: dt.datetime | None = None

    @property
    def policy(self) -> str:
        return self.remote_artifacts[0].policy if self.remote_artifacts else "streamed"


@dataclass(frozen=True)
class Listing(Resolved):
    entries: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class Redirect(Resolved):
    location: str = ""


@dataclass(frozen=True)
class NotFound(Resolved):
    reason: str = "not found"


# The one NotFound that depends on a content artifact's state (it has no stored artifact
# and no remote artifact): the resolution cache drops it when such a state changes.
NOT_DOWNLOADED = "content is not downloaded and has no remote"


@dataclass(frozen=True)
class Forbidden(Resolved):
    reason: str = "forbidden"
    status: int = 403
    challenge: str | None = None
    retry_after: int | None = None  # 429 and 503: seconds before trying again


@dataclass(frozen=True)
class Unverified(Resolved):
    """A basic-auth password still to be checked. The caller hashes it off the resolver's
    thread (`service.passwords`), then resolves again with `verified=check.cache_key`."""

    check: PasswordCheck | None = None


Resolution = LocalArtifact | RemoteSource | Listing | Redirect | NotFound | Forbidden | Unverified


@dataclass(frozen=True)
class GuardRef:
    """A distribution's content guard: checked on every request, never cached as a verdict."""

    kind: str
    settings: Mapping[str, Any]


@dataclass(frozen=True, slots=True)  # one per cached path: no __dict__ each
class Located:
    """What a path leads to before its guard is checked: what the resolution cache keeps.
    `resolution` is never Forbidden or Unverified; `guard` is the matched distribution's.
    `cacheable` is False for an answer that depends on the query string (a pull-through
    remote that forwards it)."""

    resolution: Resolution
    guard: GuardRef | None = None
    cacheable: bool = True


def refused(path: str, ref: DistributionRef | None, refusal: Refusal) -> Forbidden:
    """The answer for a request a guard refused."""
    return Forbidden(
        path,
        ref,
        None,
        None,
        refusal.reason,
        refusal.status,
        refusal.challenge,
        refusal.retry_after,
    )
