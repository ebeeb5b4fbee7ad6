"""Per-process counters in Prometheus text format, the same for both designs."""

from __future__ import annotations

import os
from dataclasses import dataclass

from pulp_content.service import queries
from pulp_content.service.cache import CacheStats

_HELP = {
    "requests": "Requests this process handled.",
    "db_queries": "Database queries this process ran for requests.",
    "db_background_queries": "Database queries this process ran for no request "
    "(following changes for the resolution cache).",
    "cache_hits": "Requests whose resolution came from the cache.",
    "cache_misses": "Requests whose resolution asked the database.",
    "cache_invalidations": "Changes that dropped resolutions from the cache.",
    "upstream_requests": "Requests this process sent to upstream remotes.",
    "bytes_sent": "Bytes this process wrote in responses, headers included.",
    "password_hashes": "Basic-auth passwords this process hashed (unknown users too).",
    "password_hash_iterations": "PBKDF2 iterations of those hashes: the CPU they cost.",
}


@dataclass
class Counters:
    """What a process counts; database queries come from `queries.total()`."""

    process: str
    requests: int = 0
    upstream_requests: int = 0
    bytes_sent: int = 0
    password_hashes: int = 0
    password_hash_iterations: int = 0
    cache: CacheStats | None = None

    def render(self) -> str:
        values = {
            "requests": self.requests,
            "db_queries": queries.total(),
            "upstream_requests": self.upstream_requests,
            "bytes_sent": self.bytes_sent,
            "password_hashes": self.password_hashes,
            "password_hash_iterations": self.password_hash_iterations,
            "db_background_queries": queries.background_total(),
        }
        if self.cache is not None:
            values["cache_hits"] = self.cache.hits
            values["cache_misses"] = self.cache.misses
            values["cache_invalidations"] = self.cache.invalidations
        lines = []
        for name, value in values.items():
            metric = f"pulp_content_{name}_total"
            lines += [
                f"# HELP {metric} {_HELP[name]}",
                f"# TYPE {metric} counter",
                f'{metric}{{process="{self.process}",pid="{os.getpid()}"}} {value}',
            ]
        return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, float]:
    """Sum each `pulp_content_*_total` sample of a /metrics page by metric name."""
    totals: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("pulp_content_"):
            continue
        name_labels, _, value = line.rpartition(" ")
        name = name_labels.split("{", 1)[0].removeprefix("pulp_content_").removesuffix("_total")
        totals[name] = totals.get(name, 0.0) + float(value)
    return totals
