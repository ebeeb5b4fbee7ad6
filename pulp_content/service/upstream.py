"""Talking to upstream remotes: one aiohttp session per remote configuration.

Redirects are followed here, not by aiohttp: a remote's own headers and its basic auth
go to the remote's origin (scheme, host, port) only, never to another one a redirect
points at (aiohttp drops only Authorization; browsers and `requests` drop both).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
from aiohttp import hdrs
from yarl import URL

from pulp_content.service.errors import UpstreamError
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.tls import ssl_context

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
        response = await self._follow(method, remote, url, dict(headers or {}))
        try:
            if response.status >= 400:
                raise UpstreamError(
                    url, f"answered {response.status} {response.reason}", status=response.status
                )
            yield response
        finally:
            response.release()

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
