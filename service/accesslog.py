"""The access log: one line per request, and the counters /metrics reports."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from service.keys import COUNTERS

log = logging.getLogger("pulp_content.access")


class AccessLogger(AbstractAccessLogger):
    """Called once a response is finished, so its body length is final."""

    @property
    def enabled(self) -> bool:
        # Counting must not depend on the log level; the line itself still does.
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        counters = request.app[COUNTERS] if isinstance(request, web.Request) else None
        if counters is not None:
            counters.requests += 1
            counters.bytes_sent += response.body_length
        self.logger.info(
            '%s "%s %s" %d %d %.1fms',
            request.remote,
            request.method,
            request.path_qs,
            response.status,
            response.body_length,
            time * 1000,
        )


RUNNER_OPTIONS: dict[str, object] = {"access_log_class": AccessLogger, "access_log": log}
