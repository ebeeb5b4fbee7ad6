"""A Remote's download settings as a plain value, so streaming code needs no ORM."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from pulp_content.service.freshness import parse_patterns
from pulp_content.service.retries import DEFAULT_RETRIES


@dataclass(frozen=True)
class RemoteConfig:
    id: int
    name: str
    url: str
    policy: str
    updated: dt.datetime | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    headers: tuple[tuple[str, str], ...] = field(default=(), repr=False)
    ca_cert: str | None = None
    client_cert: str | None = None
    client_key: str | None = field(default=None, repr=False)
    tls_validation: bool = True
    proxy_url: str | None = None
    proxy_username: str | None = None
    proxy_password: str | None = field(default=None, repr=False)
    connect_timeout: float = 20.0
    sock_read_timeout: float = 60.0
    total_timeout: float | None = None
    download_concurrency: int = 10
    max_size: int | None = None
    forward_query: bool = False
    retries: int = DEFAULT_RETRIES  # times a 429, a 5xx or no answer is asked again
    mutable: tuple[str, ...] = ()  # the remote's own globs, beside freshness.DEFAULT_MUTABLE
    metadata_max_age: int | None = None  # None: freshness.DEFAULT_METADATA_MAX_AGE
    max_stale: int | None = None  # None: freshness.DEFAULT_MAX_STALE
    quota: int | None = None  # bytes of reclaimable artifacts kept (None: no bound)

    @classmethod
    def from_model(cls, remote: Any) -> RemoteConfig:
        """Copy the download settings of a `models.Remote`."""
        return cls(
            id=remote.pk,
            name=remote.name,
            url=remote.url,
            policy=remote.policy,
            updated=remote.updated,
            username=remote.username,
            password=remote.password,
            headers=tuple(sorted((remote.headers or {}).items())),
            ca_cert=remote.ca_cert,
            client_cert=remote.client_cert,
            client_key=remote.client_key,
            tls_validation=remote.tls_validation,
            proxy_url=remote.proxy_url,
            proxy_username=remote.proxy_username,
            proxy_password=remote.proxy_password,
            connect_timeout=remote.connect_timeout,
            sock_read_timeout=remote.sock_read_timeout,
            total_timeout=remote.total_timeout,
            download_concurrency=remote.download_concurrency,
            max_size=remote.max_size,
            forward_query=remote.forward_query,
            retries=remote.retries,
            mutable=parse_patterns(remote.mutable),
            metadata_max_age=remote.metadata_max_age,
            max_stale=remote.max_stale,
            quota=remote.quota,
        )
