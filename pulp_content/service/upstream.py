"""Talking to upstream remotes: one aiohttp session per remote configuration.

An answer that says "not now" (429, a 5xx: see `retries`) or no answer at all (refused,
reset, a name that does not resolve, a connect timeout) is asked again, up to the
remote's `retries` times, before anything of it reaches the caller: the caller (one
shared download, a sync) sees the first answer worth having, or the last failure.

Redirects are followed here, not by aiohttp: a remote's own headers and its basic auth
go to the remote's origin (scheme, host, port) only, never to another one a redirect
points at (aiohttp drops only Authorization; browsers and `requests` drop both).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import itertools
import logging
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from pulp_content.service.errors import UpstreamError
from pulp_content.service.redact import shown
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.retries import (
    RETRIED_STATUSES,
    RETRY_BUDGET,
    Verdict,
    next_try,
    retry_after,
)
from pulp_content.service.tls import ssl_context

log = logging.getLogger(__name__)

USER_AGENT = "pulp-content/0.1"
MAX_REDIRECTS = 10
# RFC 9110 §15.4: the redirects that carry a Location to follow (a GET stays a GET).
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class Upstream(Protocol):
    """Opens a GET or HEAD on a remote; raises UpstreamError for anything but a 2xx answer."""

    requests: int  # requests sent upstream so far (for /metrics and the tests)

    def get(
        self, remote: RemoteConfig, url: str, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]: ...

    def head(
        self, remote: RemoteConfig, url: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]: ...

    async def aclose(self) -> None: ...


def credential_headers(remote: RemoteConfig) -> dict[str, str]:
    """The remote's extra headers and its basic auth (RFC 7617): for its origin only."""
    headers = dict(remote.headers)
    if remote.username:
        pair = f"{remote.username}:{remote.password or ''}".encode()
        headers[hdrs.AUTHORIZATION] = "Basic " + base64.b64encode(pair).decode()
    return headers


def without_userinfo(url: URL, remote: RemoteConfig) -> tuple[URL, dict[str, str]]:
    """`url` without a `user:password@` (a row from before credentials moved into their
    own fields), and the credential headers for the remote's origin, which it feeds."""
    headers = credential_headers(remote)
    if url.user is None:
        return url, headers
    if hdrs.AUTHORIZATION not in headers:
        pair = f"{url.user}:{url.password or ''}".encode()
        headers[hdrs.AUTHORIZATION] = "Basic " + base64.b64encode(pair).decode()
    return url.with_user(None), headers


def origin(url: URL) -> tuple[str, str | None, int | None]:
    """RFC 6454 §4: scheme, host and port (the default one when none is written)."""
    return url.scheme, (url.host or "").lower(), url.port


def proxy_auth(remote: RemoteConfig) -> aiohttp.BasicAuth | None:
    if not remote.proxy_username:
        return None
    return aiohttp.BasicAuth(remote.proxy_username, remote.proxy_password or "")


def timeout_of(remote: RemoteConfig) -> aiohttp.ClientTimeout:
    return aiohttp.ClientTimeout(
        total=remote.total_timeout,
        sock_connect=remote.connect_timeout,
        sock_read=remote.sock_read_timeout,
    )


class HttpUpstream:
    """The aiohttp implementation of Upstream; sessions live until `aclose()`."""

    def __init__(self) -> None:
        self._sessions: dict[tuple[int, object], aiohttp.ClientSession] = {}
        self.requests = 0
        self.retried = 0  # requests sent again after a 429, a 5xx or no answer

    def _session(self, remote: RemoteConfig) -> aiohttp.ClientSession:
        key = (remote.id, remote.updated)
        session = self._sessions.get(key)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(ssl=ssl_context(remote), limit=0)
            session = aiohttp.ClientSession(
                connector=connector,
                timeout=timeout_of(remote),
                headers={hdrs.USER_AGENT: USER_AGENT},
                auto_decompress=False,
                # Bigger reads, fewer trips around the loop per downloaded MiB.
                read_bufsize=1024 * 1024,
            )
            self._sessions[key] = session
        return session

    def get(
        self, remote: RemoteConfig, url: str, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """GET `url`; yields the response once its status is known to be 2xx.

        Only failures up to the headers become UpstreamError here; read the body with
        `chunks()`, so a client-side error inside the block is never blamed on the upstream.
        """
        return self._request(hdrs.METH_GET, remote, url, headers)

    def head(
        self, remote: RemoteConfig, url: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """HEAD `url`; yields the response once its status is known to be 2xx."""
        return self._request(hdrs.METH_HEAD, remote, url, None)

    @contextlib.asynccontextmanager
    async def _request(
        self,
        method: str,
        remote: RemoteConfig,
        url: str,
        headers: Mapping[str, str] | None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        response, note = await self._answer(method, remote, url, dict(headers or {}))
        try:
            if response.status >= 400:
                reason = f"answered {response.status} {response.reason}"
                text = f"{reason} ({note})" if note else reason
                raise UpstreamError(url, text, status=response.status)
            yield response
        finally:
            response.release()

    async def _answer(
        self, method: str, remote: RemoteConfig, url: str, headers: dict[str, str]
    ) -> tuple[aiohttp.ClientResponse, str]:
        """The upstream's answer, asked again while it is a 429, a 5xx or none at all (as
        `next_try` allows); with, for a final failed answer, why it was not asked again."""
        deadline = time.monotonic() + (remote.total_timeout or RETRY_BUDGET)
        for retry in itertools.count(1):
            try:
                response = await self._follow(method, remote, url, headers)
            except UpstreamError as exc:
                wait = after_no_answer(exc, url, remote.retries, retry, deadline)
                await self._pause(remote, url, exc.reason, wait, retry)
                continue
            if response.status not in RETRIED_STATUSES:
                return response, ""
            verdict = after_answer(response, remote.retries, retry, deadline)
            if verdict.wait is None:
                return response, verdict.why
            response.release()
            await self._pause(remote, url, f"answered {response.status}", verdict.wait, retry)
        raise AssertionError("unreachable")

    async def _pause(
        self, remote: RemoteConfig, url: str, failure: str, wait: float, retry: int
    ) -> None:
        """One log line per retry (credentials masked), then the wait."""
        log.info(
            "remote %s: %s %s; retry %d of %d in %.2f s",
            shown(remote.name),
            shown(url),
            shown(failure),
            retry,
            remote.retries,
            wait,
        )
        self.retried += 1
        await asyncio.sleep(wait)

    async def _follow(
        self, method: str, remote: RemoteConfig, url: str, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """GET or HEAD `url`, following up to MAX_REDIRECTS redirects; the remote's
        credentials go along only while the target is on the remote's own origin."""
        own = origin(URL(remote.url))
        target, credentials = without_userinfo(URL(url), remote)
        for _ in range(MAX_REDIRECTS + 1):
            sent = {**credentials, **headers} if origin(target) == own else headers
            response = await self._send(method, remote, url, target, sent)
            location = response.headers.get(hdrs.LOCATION)
            if response.status not in REDIRECTS or location is None:
                return response
            response.release()
            target = redirect_target(url, response.url, location)
        raise UpstreamError(url, f"redirected more than {MAX_REDIRECTS} times")

    async def _send(
        self, method: str, remote: RemoteConfig, url: str, target: URL, headers: dict[str, str]
    ) -> aiohttp.ClientResponse:
        """One request, no redirect followed; failures are UpstreamErrors about `url`."""
        self.requests += 1
        try:
            return await self._session(remote).request(
                method,
                target,
                headers=headers,
                proxy=remote.proxy_url,
                proxy_auth=proxy_auth(remote),
                allow_redirects=False,
            )
        except TimeoutError as exc:
            raise UpstreamError(url, "timed out", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(url, describe_client_error(exc)) from exc

    async def aclose(self) -> None:
        sessions, self._sessions = list(self._sessions.values()), {}
        await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
        if sessions:
            # Closed transports finish on the next loop iterations; let them, so none is
            # left half-closed when the loop stops (aiohttp's graceful-shutdown advice).
            await asyncio.sleep(0.05)


async def chunks(response: aiohttp.ClientResponse, size: int) -> AsyncIterator[bytes]:
    """The body of an upstream response; read failures become UpstreamError."""
    url = str(response.url)
    try:
        async for chunk in response.content.iter_chunked(size):
            yield chunk
    except TimeoutError as exc:
        raise UpstreamError(url, "stalled past the read timeout", timeout=True) from exc
    except aiohttp.ClientError as exc:
        raise UpstreamError(url, describe_client_error(exc)) from exc


def redirect_target(url: str, current: URL, location: str) -> URL:
    """Where a redirect points: `location` resolved against the URL that answered it."""
    try:
        target = current.join(URL(location))
    except ValueError:
        raise UpstreamError(url, "redirected to an invalid URL") from None
    if target.scheme not in ("http", "https") or not target.host:
        raise UpstreamError(url, "redirected to a URL that is not http(s)")
    return target


def after_no_answer(
    exc: UpstreamError, url: str, retries: int, retry: int, deadline: float
) -> float:
    """Seconds to wait before retry number `retry` of a request that got no answer;
    raises `exc` (saying why it was not retried, when that adds something) otherwise."""
    if not transient(exc.__cause__):
        raise exc
    verdict = next_try(retry, retries, None, deadline - time.monotonic(), random.random())
    if verdict.wait is not None:
        return verdict.wait
    if not verdict.why:
        raise exc
    text = f"{exc.reason} ({verdict.why})"
    raise UpstreamError(url, text, timeout=exc.timeout) from exc.__cause__


def after_answer(
    response: aiohttp.ClientResponse, retries: int, retry: int, deadline: float
) -> Verdict:
    """Whether retry number `retry` follows a 429 or 5xx answer, and when: at its
    Retry-After, else after an exponential backoff."""
    asked = retry_after(response.headers.get(hdrs.RETRY_AFTER), dt.datetime.now(dt.UTC))
    left = deadline - time.monotonic()
    return next_try(retry, retries, asked, left, random.random())


def transient(exc: BaseException | None) -> bool:
    """Whether a request that got no answer may get one when sent again: refused, reset,
    dropped before the headers, a name that did not resolve, a connect timeout. Not a
    TLS failure (a certificate does not fix itself) nor a read or total timeout (the
    upstream is there, only slow: asking again would double the client's wait)."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return False
    return isinstance(
        exc,
        aiohttp.ClientOSError | aiohttp.ServerDisconnectedError | aiohttp.ConnectionTimeoutError,
    )


def describe_client_error(exc: BaseException) -> str:
    """One short line for an aiohttp client failure."""
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS failed: {exc.__class__.__name__}"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect ({exc.os_error.strerror or exc.os_error})"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "closed the connection"
    text = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
    return text[:200]
