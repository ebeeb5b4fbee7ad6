"""What a verified download is, and the running check that makes it one: size, every
expected digest, and the remote's size bound (used by lazy downloads and by sync)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from pulp_content.service.errors import (
    DigestMismatch,
    TooLarge,
)
from pulp_content.service.freshness import UpstreamState
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import DIGESTS, RemoteRef, RemoteSource


@dataclass(frozen=True)
class Download:
    """A verified download: the partial file (None when nothing is kept) and its digests."""

    partial: Path | None
    size: int
    digests: dict[str, str]
    # What the upstream said of it (validators, lifetime): a pull-through copy keeps it.
    upstream: UpstreamState = field(default_factory=UpstreamState)


def check_size(remote: RemoteConfig, url: str, size: int | None) -> None:
    """Refuse a file larger than its remote's max_size (before downloading it)."""
    if remote.max_size is not None and size is not None and size > remote.max_size:
        raise TooLarge(url, remote.max_size)


def over_quota(quota: int | None, size: int) -> bool:
    """Whether a file is larger than all its remote may keep (it is served, not kept)."""
    return quota is not None and size > quota


class Verifier:
    """Running size and digests of a download against what is expected of it."""

    def __init__(
        self, url: str, size: int | None, expected: dict[str, str], limit: int | None = None
    ) -> None:
        self.url = url
        self.size = size
        self.limit = limit  # the remote's max_size: a body that grows past it is refused
        self.expected = {k: v.lower() for k, v in expected.items() if k in DIGESTS and v}
        self.hashers = {name: hashlib.new(name) for name in {"sha256", *self.expected}}
        self.received = 0

    def update(self, chunk: bytes) -> None:
        self.count(chunk)
        self.digest(chunk)

    def count(self, chunk: bytes) -> None:
        """The size checks alone (cheap: for the event loop, as each chunk arrives)."""
        self.received += len(chunk)
        if self.limit is not None and self.received > self.limit:
            raise TooLarge(self.url, self.limit)
        if self.size is not None and self.received > self.size:
            raise DigestMismatch(self.url, f"sent more than the expected {self.size} bytes")

    def digest(self, chunk: bytes) -> None:
        """The digests (a thread's work: hashing a megabyte takes milliseconds)."""
        for hasher in self.hashers.values():
            hasher.update(chunk)

    def finish(self) -> dict[str, str]:
        """The digests of what arrived; raises DigestMismatch if it is not what was expected."""
        if self.size is not None and self.received != self.size:
            raise DigestMismatch(self.url, f"sent {self.received} bytes, expected {self.size}")
        digests = {name: h.hexdigest() for name, h in self.hashers.items()}
        for name, value in self.expected.items():
            if digests[name] != value:
                raise DigestMismatch(self.url, f"{name} mismatch")
        return digests


def expected_digests(src: RemoteSource, ra: RemoteRef) -> dict[str, str]:
    digests = dict(ra.digests)
    if src.sha256:
        digests["sha256"] = src.sha256
    return digests
