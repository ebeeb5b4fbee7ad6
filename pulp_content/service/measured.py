"""An Upstream that counts what it does, by remote, for /metrics: requests, body bytes
received, failures. It wraps another Upstream (`upstream.HttpUpstream`), which knows
nothing of metrics; a request is one `get` or `head`, its retries and redirects
included."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping

import aiohttp

from pulp_content.service.errors import DigestMismatch, TooLarge, UpstreamError
from pulp_content.service.metrics import Metrics
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.upstream import Upstream


class MeasuredUpstream:
    """`inner`, counted into `metrics`."""

    def __init__(self, inner: Upstream, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @property
    def requests(self) -> int:
        """The inner Upstream's count (each redirect and retry is one more)."""
        return self.inner.requests

    @requests.setter
    def requests(self, value: int) -> None:
        self.inner.requests = value

    def get(
        self, remote: RemoteConfig, url: str, headers: Mapping[str, str] | None = None
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._measured(remote, self.inner.get(remote, url, headers))

    def head(
        self, remote: RemoteConfig, url: str
    ) -> contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse]:
        return self._measured(remote, self.inner.head(remote, url))

    @contextlib.asynccontextmanager
    async def _measured(
        self,
        remote: RemoteConfig,
        opening: contextlib.AbstractAsyncContextManager[aiohttp.ClientResponse],
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Count the request; a failure before the answer or while its body is read (an
        error status, no answer, a body cut short), but not a body that is not what was
        promised (the download's verdict: verification failures); and the body's bytes
        once the response ends."""
        self.metrics.upstream_requests.labels(remote.name).inc()
        response: aiohttp.ClientResponse | None = None
        try:
            async with opening as response:
                yield response
        except UpstreamError as exc:
            if not isinstance(exc, DigestMismatch | TooLarge):
                self.metrics.upstream_failures.labels(remote.name).inc()
            raise
        finally:
            if response is not None and response.content.total_bytes:
                received = self.metrics.upstream_received_bytes.labels(remote.name)
                received.inc(response.content.total_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()
