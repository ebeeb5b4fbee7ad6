"""The access log: one line per request, and the counters /metrics reports; and the
logging set-up every way of running the service shares."""

from __future__ import annotations

import json
import logging

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from pulp_content.service.keys import COUNTERS, SENT_DIRECTLY, SERVED_FROM, SETTINGS
from pulp_content.service.redact import escape

log = logging.getLogger("pulp_content.access")


class AccessLogger(AbstractAccessLogger):
    """Called once a response is finished, so its body length is final."""

    @property
    def enabled(self) -> bool:
        # Counting must not depend on the log level; the line itself still does.
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        app = _app_of(request)
        sent = bytes_sent(request, response)
        if app is not None:
            app[COUNTERS].requests += 1
            app[COUNTERS].bytes_sent += sent
        if not self.logger.isEnabledFor(logging.INFO):
            return
        served_from = request.get(SERVED_FROM, "-")
        settings = app[SETTINGS] if app is not None else None
        if settings is not None and settings.log_format == "json":
            # json.dumps escapes every control character (and, ensure_ascii, U+2028).
            self.logger.info(
                json.dumps(
                    {
                        "remote": request.remote,
                        "method": request.method,
                        # The path only: a signed URL's query is a credential.
                        "path": request.path,
                        "status": response.status,
                        "bytes_sent": sent,  # with headers, like nginx's $bytes_sent
                        "duration_ms": round(time * 1000, 1),
                        "served_from": served_from,
                    }
                )
            )
            return
        # Every text field escaped: a decoded path may hold %0a, and must not start a
        # forged line of its own.
        self.logger.info(
            '%s "%s %s" %d %d %.1fms %s',
            escape(request.remote),
            escape(request.method),
            escape(request.path),
            response.status,
            sent,
            time * 1000,
            escape(served_from),
        )


def bytes_sent(request: web.BaseRequest, response: web.StreamResponse) -> int:
    """Headers and body, the body's sendfile part included (aiohttp counts only what
    went through the response's writer)."""
    return response.body_length + request.get(SENT_DIRECTLY, 0)


def _app_of(request: web.BaseRequest) -> web.Application | None:
    """The application that handled `request`; None for one aiohttp refused before
    routing it (a malformed request line or header gets its 400 from aiohttp itself)."""
    if not isinstance(request, web.Request) or request._match_info is None:
        return None
    return request.app


RUNNER_OPTIONS: dict[str, object] = {"access_log_class": AccessLogger, "access_log": log}


class OneLineBadRequests(logging.Filter):
    """aiohttp logs every malformed request it refuses with a traceback at ERROR: noise
    anyone on the internet can produce at will. A client's error (4xx) becomes one INFO
    line; anything else is left as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            reason = escape(" ".join(str(exc.message).split())[:160])
            record.msg = "refused a malformed request from %s: %d %s"
            remote = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
            record.args = (escape(remote), exc.code, reason)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def one_line_bad_requests() -> None:
    """Install OneLineBadRequests on aiohttp's server logger (once)."""
    server = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, OneLineBadRequests) for f in server.filters):
        server.addFilter(OneLineBadRequests())


def configure_logging() -> None:
    """Log lines to stderr at INFO, the access log included, in every process that serves."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
