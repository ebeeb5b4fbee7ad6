"""Content guards: the check hook every request passes before any byte is sent.

A guard has a `kind`; each kind is a function from the guard's settings and the
request's facts to None (permitted) or a refusal. Kinds are registered in CHECKS;
a guard whose kind is unknown refuses, so a misconfigured guard never opens a door.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RequestFacts:
    """What a guard may look at: the path and the request headers."""

    path: str
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Refusal:
    """Why a guard refused; `status` is 401 (credentials may help) or 403."""

    reason: str
    status: int = 403
    challenge: str | None = None


Check = Callable[[Mapping[str, Any], RequestFacts], Refusal | None]
CHECKS: dict[str, Check] = {}


def check(kind: str, settings: Mapping[str, Any], facts: RequestFacts) -> Refusal | None:
    """None when the guard permits the request, else why it refuses."""
    checker = CHECKS.get(kind)
    if checker is None:
        return Refusal(f"content guard kind {kind!r} is not supported")
    return checker(settings, facts)
