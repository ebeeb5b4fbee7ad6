"""Content guards: the check every request passes before any byte is sent.

A guard has a `kind`; each kind is a function from the guard's settings and the
request's facts to None (permitted), a refusal, or (basic) a password check still to
run. A guard whose kind is unknown refuses, so a misconfigured guard never opens a door.
Refusals carry a short reason and never a secret (they are sent to the client and
logged).

Kinds: `header` (a named header carries one of the configured values), `basic` (HTTP
basic auth against PBKDF2 password hashes), `signed-url` (an HMAC over path and expiry,
made by `pulp-content sign`), `x509` (a client certificate, passed by a trusted front web
server in a header, chains to the configured CA).

A `basic` guard does not hash here: it answers a `PasswordCheck`, which the service runs
on a pool of its own (`service.passwords`), so hashing never holds up the thread that
resolves every request.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from pulp_content.service.errors import InvalidInput
from pulp_content.service.text import check_text
from pulp_content.service.types import (
    Located,
    PasswordCheck,
    Refusal,
    Resolution,
    Unverified,
    refused,
)

KINDS = ("header", "basic", "signed-url", "x509")
PBKDF2_ITERATIONS = 200_000
REALM = "pulp-content"


@dataclass(frozen=True)
class RequestFacts:
    """What a guard may look at: the path (percent-decoded once, as resolved), the request
    headers, the query, and whether the peer is a trusted proxy (whose headers count)."""

    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    query: Mapping[str, str] = field(default_factory=dict)
    from_proxy: bool = False

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


Verdict = Refusal | PasswordCheck | None
Check = Callable[[Mapping[str, Any], RequestFacts], Verdict]


def check(kind: str, settings: Mapping[str, Any], facts: RequestFacts) -> Verdict:
    """None when the guard permits the request, a PasswordCheck still to run, or why it
    refuses."""
    checker = CHECKS.get(kind)
    if checker is None:
        return Refusal(f"content guard kind {kind!r} is not supported")
    try:
        return checker(settings, facts)
    except (KeyError, TypeError, ValueError):
        return Refusal("content guard is misconfigured")


def admit(
    located: Located,
    query_string: str,
    headers: Mapping[str, str],
    from_proxy: bool = False,
    verified: str | None = None,
) -> Resolution:
    """The located answer, or why its distribution's guard refuses the request, or the
    password check still to run (Unverified, unless `verified` is that check's cache key):
    the step of resolving that runs on every request, cached answer or not. Cheap: no
    hash is computed here (see `service.passwords`)."""
    resolution, guard = located.resolution, located.guard
    if guard is None:
        return resolution
    facts = RequestFacts(resolution.path, headers, dict(parse_qsl(query_string)), from_proxy)
    verdict = check(guard.kind, guard.settings, facts)
    if isinstance(verdict, Refusal):
        return refused(resolution.path, resolution.distribution, verdict)
    if isinstance(verdict, PasswordCheck) and verdict.cache_key != verified:
        return Unverified(resolution.path, resolution.distribution, check=verdict)
    return resolution


def check_now(kind: str, settings: Mapping[str, Any], facts: RequestFacts) -> Refusal | None:
    """`check` with any password hashed right here (the CLI and the WSGI baseline)."""
    verdict = check(kind, settings, facts)
    if isinstance(verdict, PasswordCheck):
        return None if password_matches(verdict) else wrong_password(verdict)
    return verdict


# -- header -----------------------------------------------------------------------------------
def _header(settings: Mapping[str, Any], facts: RequestFacts) -> Refusal | None:
    value = facts.header(settings["header"])
    if value is None:
        return Refusal(f"missing header {settings['header']}")
    if not any(hmac.compare_digest(value, allowed) for allowed in settings["values"]):
        return Refusal(f"header {settings['header']} has no permitted value")
    return None


# -- basic ------------------------------------------------------------------------------------
def hash_password(password: str, salt: bytes | None = None) -> str:
    """`pbkdf2_sha256$iterations$salt$hash`, base64; never the password."""
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, PBKDF2_ITERATIONS)
    return _encode(PBKDF2_ITERATIONS, salt, digest)


def _encode(iterations: int, salt: bytes, digest: bytes) -> str:
    encoded = (base64.b64encode(salt).decode(), base64.b64encode(digest).decode())
    return "$".join(["pbkdf2_sha256", str(iterations), *encoded])


def _cost(stored: str) -> int:
    """The iterations of a stored hash; ValueError if it is not one of ours."""
    scheme, iterations, salt, digest = stored.split("$")
    if scheme != "pbkdf2_sha256" or not iterations.isdigit():
        raise ValueError("not a pbkdf2_sha256 hash")
    for part in (salt, digest):
        base64.b64decode(part, validate=True)  # binascii.Error is a ValueError
    return int(iterations)


def _kdf(password: str, stored: str) -> bool:
    _scheme, iterations, salt, expected = stored.split("$")
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    return hmac.compare_digest(digest, base64.b64decode(expected))


def password_matches(attempt: PasswordCheck) -> bool:
    """Run the KDF (slow on purpose: call it off the event loop and off the resolver)."""
    matched = _kdf(attempt.password, attempt.stored)
    return matched and attempt.known


def wrong_password(attempt: PasswordCheck) -> Refusal:
    return Refusal("wrong user name or password", 401, attempt.challenge)


def _dummy_hash(users: Mapping[str, str]) -> str:
    """A hash no password matches, as costly as the guard's own: the iterations of its
    most expensive user (a random salt and digest, so computing it costs nothing)."""
    costs = [_cost(stored) for stored in users.values()] or [PBKDF2_ITERATIONS]
    return _encode(max(costs), secrets.token_bytes(16), secrets.token_bytes(32))


def _basic(settings: Mapping[str, Any], facts: RequestFacts) -> Verdict:
    challenge = f'Basic realm="{REALM}", charset="UTF-8"'
    header = facts.header("Authorization")
    if header is None or not header.lower().startswith("basic "):
        return Refusal("credentials required", 401, challenge)
    try:
        user, _, password = base64.b64decode(header[6:].strip()).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return Refusal("malformed credentials", 401, challenge)
    users: Mapping[str, str] = settings["users"]
    stored = users.get(user)
    known = stored is not None
    stored = stored if stored is not None else _dummy_hash(users)
    # What a verified attempt is remembered by: the credentials and the hash they
    # matched (a changed password is a new key). Never stored or logged as such.
    cache_key = hashlib.sha256(f"{header}\0{stored}".encode()).hexdigest()
    return PasswordCheck(user, password, stored, known, _cost(stored), challenge, cache_key)


# -- signed-url -------------------------------------------------------------------------------
def new_key() -> str:
    return secrets.token_hex(32)


def signature(key: str, path: str, expires: int) -> str:
    """HMAC-SHA256 over the path and the expiry: the signature binds both.

    `path` is the canonical form, the URL path percent-decoded exactly once, which is also
    what the service resolves: `sign` decodes the URL it is given once, the service checks
    the path it decoded once. (Decoding again would let `p%2541.txt` pass for `pA.txt`.)
    """
    message = f"{path}\n{expires}".encode()
    return hmac.new(key.encode(), message, hashlib.sha256).hexdigest()


def _signed_url(settings: Mapping[str, Any], facts: RequestFacts) -> Refusal | None:
    expires, given = facts.query.get("expires"), facts.query.get("signature")
    if not expires or not given:
        return Refusal("the URL is not signed")
    if not expires.isdigit() or int(expires) < time.time():
        return Refusal("the signed URL has expired")
    if not hmac.compare_digest(signature(settings["key"], facts.path, int(expires)), given):
        return Refusal("the URL signature does not match")
    return None


# -- x509 -------------------------------------------------------------------------------------
def _x509(settings: Mapping[str, Any], facts: RequestFacts) -> Refusal | None:
    from pulp_content.service import clientcert

    # The certificate header is the front web server's word that it verified the TLS
    # client: from anyone else it is just text anybody can send.
    presented = facts.header(settings.get("header", "X-Client-Cert")) if facts.from_proxy else None
    if not presented:
        return Refusal("a client certificate is required")
    try:
        clientcert.verify(presented, settings["ca_pem"], settings.get("intermediates_pem", ""))
    except clientcert.Unverified as exc:
        return Refusal(str(exc))
    return None


CHECKS: dict[str, Check] = {
    "header": _header,
    "basic": _basic,
    "signed-url": _signed_url,
    "x509": _x509,
}


def settings_for(kind: str, **options: Any) -> dict[str, Any]:
    """Validated settings of a new guard; secrets are stored hashed or generated."""
    _check_texts(options)
    if kind == "header":
        if not options.get("header") or not options.get("values"):
            raise InvalidInput("a header guard needs --header NAME and at least one --value")
        return {"header": options["header"], "values": list(options["values"])}
    if kind == "basic":
        users = {}
        for pair in options.get("users") or ():
            user, sep, password = pair.partition(":")
            if not sep or not user or not password:
                raise InvalidInput(f"--user takes NAME:PASSWORD, not {user!r}...")
            users[user] = hash_password(password)
        if not users:
            raise InvalidInput("a basic guard needs at least one --user NAME:PASSWORD")
        return {"users": users}
    if kind == "signed-url":
        return {"key": options.get("key") or new_key()}
    if kind == "x509":
        return _x509_settings(options)
    raise InvalidInput(f"invalid guard kind {kind!r}: choose one of {', '.join(KINDS)}")


def _check_texts(options: Mapping[str, Any]) -> None:
    """Every text option valid UTF-8 without control characters; values, passwords and
    keys are secrets, so the error does not show them."""
    if options.get("header"):
        check_text(options["header"], "--header")
    for value in options.get("values") or ():
        check_text(value, "a --value", secret=True)
    for pair in options.get("users") or ():
        user, _, password = pair.partition(":")
        check_text(user, "--user")
        check_text(password, f"the password of {user!r}", secret=True)
    if options.get("key"):
        check_text(options["key"], "--key", secret=True)


def _x509_settings(options: Mapping[str, Any]) -> dict[str, Any]:
    from pulp_content.service.clientcert import read_bundle

    pem = options.get("ca_pem")
    if not pem:
        raise InvalidInput("an x509 guard needs --ca-cert FILE")
    settings = {
        "ca_pem": read_bundle(pem, "--ca-cert", ca=True),
        "header": options.get("header") or "X-Client-Cert",
    }
    if options.get("intermediates_pem"):
        settings["intermediates_pem"] = read_bundle(
            options["intermediates_pem"], "--intermediates", ca=True
        )
    return settings


def public(kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """A guard's settings for `guard show`/`list`: no key, no value, no password hash."""
    if kind == "header":
        values = settings.get("values", ())
        return {"header": settings.get("header"), "values": ["***" for _ in values]}
    if kind == "basic":
        return {"users": sorted(settings.get("users", {}))}
    if kind == "signed-url":
        return {"key": "***"}
    if kind == "x509":
        intermediates = "(set)" if settings.get("intermediates_pem") else None
        return {"header": settings.get("header"), "ca_pem": "(set)", "intermediates": intermediates}
    return {}  # an unknown kind: nothing is known to be safe to show
