"""The access log: one line per request, and the counters /metrics reports."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from service.keys import COUNTERS, SERVED_FROM, SETTINGS

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
        if not self.logger.isEnabledFor(logging.INFO):
            return
        served_from = request.get(SERVED_FROM, "-") if isinstance(request, web.Request) else "-"
        settings = request.app[SETTINGS] if isinstance(request, web.Request) else None
        if settings is not None and settings.log_format == "json":
            self.logger.info(
                json.dumps(
                    {
                        "remote": request.remote,
                        "method": request.method,
                        # The path only: a signed URL's query is a credential.
                        "path": request.path,
                        "status": response.status,
                        "bytes_sent": response.body_length,  # with headers, like $bytes_sent
                        "duration_ms": round(time * 1000, 1),
                        "served_from": served_from,
                    }
                )
            )
            return
        self.logger.info(
            '%s "%s %s" %d %d %.1fms %s',
            request.remote,
            request.method,
            request.path,
            response.status,
            response.body_length,
            time * 1000,
            served_from,
        )


RUNNER_OPTIONS: dict[str, object] = {"access_log_class": AccessLogger, "access_log": log}
