"""Talking to upstream remotes: one aiohttp session per remote configuration."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping
from typing import Protocol

import aiohttp
from aiohttp import hdrs

from pulp_content.service.errors import UpstreamError
from pulp_content.service.remoteconfig import RemoteConfig

USER_AGENT = "pulp-content/0.1"


class Upstream(Protocol):
    """Opens a GET or HEAD on a remote; raises UpstreamError for anything but a 2xx answer."""

    def get(
        self, remote: RemoteConfig, url: str, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]: ...

    def head(
        self, remote: RemoteConfig, url: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]: ...

    async def aclose(self) -> None: ...


def ssl_context(remote: RemoteConfig) -> ssl.SSLContext | bool:
    """The TLS settings of a remote: its CA, its client certificate, or no validation."""
    if not remote.tls_validation:
        return False
    if not (remote.ca_cert or remote.client_cert):
        return True
    context = ssl.create_default_context(cadata=remote.ca_cert or None)
    if remote.client_cert:
        # load_cert_chain reads files only; keep them private and short-lived.
        with tempfile.TemporaryDirectory() as tmp:
            cert = os.path.join(tmp, "cert.pem")
            with open(os.open(cert, os.O_CREAT | os.O_WRONLY, 0o600), "w") as out:
                out.write(remote.client_cert)
                if remote.client_key:
                    out.write("\n" + remote.client_key)
            context.load_cert_chain(cert)
    return context


def session_headers(remote: RemoteConfig) -> dict[str, str]:
    """User-Agent, the remote's extra headers, and its basic auth (RFC 7617)."""
    headers = {hdrs.USER_AGENT: USER_AGENT, **dict(remote.headers)}
    if remote.username:
        pair = f"{remote.username}:{remote.password or ''}".encode()
        headers[hdrs.AUTHORIZATION] = "Basic " + base64.b64encode(pair).decode()
    return headers


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
                headers=session_headers(remote),
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
        self.requests += 1
        try:
            response = await self._session(remote).request(
                method, url, headers=dict(headers or {}), proxy=remote.proxy_url
            )
        except TimeoutError as exc:
            raise UpstreamError(url, "timed out", timeout=True) from exc
        except aiohttp.ClientError as exc:
            raise UpstreamError(url, describe_client_error(exc)) from exc
        try:
            if response.status >= 400:
                raise UpstreamError(
                    url, f"answered {response.status} {response.reason}", status=response.status
                )
            yield response
        finally:
            response.release()

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
