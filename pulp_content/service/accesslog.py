"""The access log: one line per request, and the request metrics; and the logging set-up
every way of running the service shares.

A line is nginx's `combined` format and two fields more, the duration and where the
bytes came from:

    203.0.113.9 - - [30/Nov/2026:09:10:11 +0000] "GET /pulp/content/a/f.iso HTTP/1.1" 200
    1048872 "-" "curl/8.5.0" 12.3ms upstream

(one line), or with `log_format = "json"` one JSON object with the same fields. The
client address is the peer's, or behind a trusted proxy the one it forwarded
(`proxies.client_address`). No query string is ever logged: a signed URL's query is a
credential. Every field a client chose is escaped, so no request can start a line.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from pulp_content.service.keys import METRICS, SENT_DIRECTLY, SERVED_FROM, SETTINGS
from pulp_content.service.proxies import DEFAULT_TRUSTED_PROXIES, Network, client_address
from pulp_content.service.redact import escape

log = logging.getLogger("pulp_content.access")

# The service's own endpoints (app.create_app names their routes): scrapes and probes
# would drown the request metrics.
OWN_ROUTES = frozenset({"metrics", "livez", "readyz", "health"})


class AccessLogger(AbstractAccessLogger):
    """Called once a response is finished, so its body length is final."""

    @property
    def enabled(self) -> bool:
        # Counting must not depend on the log level; the line itself still does.
        return True

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        app = _app_of(request)
        sent = bytes_sent(request, response)
        served_from = request.get(SERVED_FROM, "-")
        if app is not None and METRICS in app and not _own_route(request):
            app[METRICS].request_done(served_from, response.status, time, sent)
        if not self.logger.isEnabledFor(logging.INFO):
            return
        settings = app[SETTINGS] if app is not None else None
        trusted = settings.trusted_proxies if settings is not None else DEFAULT_TRUSTED_PROXIES
        if settings is not None and settings.log_format == "json":
            fields = access_fields(request, response.status, sent, time, served_from, trusted)
            # json.dumps escapes every control character (and, ensure_ascii, U+2028).
            self._emit(json.dumps(fields))
        else:
            self._emit(combined_line(request, response.status, sent, time, served_from, trusted))

    def _emit(self, line: str) -> None:
        """`logger.info(line)` without its search of the stack for the caller (a tenth of
        a warm request's time): the same record, through the same filters and handlers;
        or, when those are exactly what `configure_logging` set up, the line written
        to its stream as its handler would write it, with no record made at all."""
        logger = self.logger
        handler = _plain_handler(logger)
        if handler is not None:
            _write(handler, line, lambda: _record(logger, line))
        else:
            logger.handle(_record(logger, line))


def _record(logger: logging.Logger, line: str) -> logging.LogRecord:
    return logger.makeRecord(logger.name, logging.INFO, __file__, _LINE, line, (), None, "log")


_LINE = AccessLogger.log.__code__.co_firstlineno


def _plain_handler(logger: logging.Logger) -> logging.StreamHandler[Any] | None:
    """The one handler an INFO record of `logger` would reach, when nothing else would see
    the record (no filter, no other handler) and that handler formats an access line as
    the line itself (`LineFormatter`, no filter of its own); else None."""
    if logger.name != log.name or logger.filters or logger.disabled:
        return None  # (LineFormatter leaves only the access log's lines as they are)
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += current.handlers
        if len(found) > 1 or not current.propagate:
            break
        current = current.parent
    if len(found) != 1:
        return None  # none: logging's last resort decides; several: each gets the record
    handler = found[0]
    if (
        type(handler) is not logging.StreamHandler
        or type(handler.formatter) is not LineFormatter
        or handler.filters
        or handler.level > logging.INFO
    ):
        return None
    return handler


def _write(
    handler: logging.StreamHandler[Any], line: str, record: Callable[[], logging.LogRecord]
) -> None:
    """What StreamHandler.handle does with a LineFormatter's access line, under the
    handler's lock; a failure is the handler's to report (`handleError`), as ever."""
    with handler.lock or contextlib.nullcontext():
        try:
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            handler.handleError(record())


class Clock:
    """Local time as the log shows it, formatted once per second: the time zone's lookup
    and strftime cost more than the rest of a line."""

    def __init__(self) -> None:
        # (second, combined's text, ISO 8601 up to the seconds, the zone's offset)
        self._formatted = (-1, "", "", "")

    def _at(self, second: int) -> tuple[int, str, str, str]:
        formatted = self._formatted
        if formatted[0] != second:
            moment = dt.datetime.fromtimestamp(second, dt.UTC).astimezone()
            iso = moment.isoformat()  # 2026-11-30T09:10:11+00:00 (no fraction: none)
            formatted = (second, moment.strftime("%d/%b/%Y:%H:%M:%S %z"), iso[:19], iso[19:])
            self._formatted = formatted  # one assignment: a reader sees all or nothing
        return formatted

    def combined(self, moment: float) -> str:
        """`30/Nov/2026:09:10:11 +0000` for a time.time() value."""
        return self._at(_microseconds(moment)[0])[1]

    def iso(self, moment: float) -> str:
        """`2026-11-30T09:10:11.123+00:00` (milliseconds, truncated) for a time.time() value."""
        second, micro = _microseconds(moment)
        _, _, stamp, zone = self._at(second)
        return f"{stamp}.{micro // 1000:03d}{zone}"


def _microseconds(moment: float) -> tuple[int, int]:
    """Seconds and microseconds, rounded to the microsecond as datetime.fromtimestamp
    rounds them (the fraction alone, half to even)."""
    second = math.floor(moment)
    micro = round((moment - second) * 1_000_000)
    return (second + 1, 0) if micro == 1_000_000 else (second, micro)


CLOCK = Clock()


def access_fields(
    request: web.BaseRequest,
    status: int,
    sent: int,
    seconds: float,
    served_from: str,
    trusted: tuple[Network, ...],
) -> dict[str, object]:
    """What a line says about a request, unescaped (each format escapes in its own way)."""
    return {
        "remote": client_of(request, trusted),
        "time": CLOCK.iso(time.time() - seconds),  # when it started
        "method": request.method,
        # The path only: a signed URL's query is a credential.
        "path": request.path,
        "protocol": _protocol(request),
        "status": status,
        "bytes_sent": sent,  # with headers, like nginx's $bytes_sent
        "referer": request.headers.get(hdrs.REFERER),
        "user_agent": request.headers.get(hdrs.USER_AGENT),
        "duration_ms": round(seconds * 1000, 1),
        "served_from": served_from,
    }


def combined_line(
    request: web.BaseRequest,
    status: int,
    sent: int,
    seconds: float,
    served_from: str,
    trusted: tuple[Network, ...],
) -> str:
    """nginx's `combined` line, then the duration and the served-from, for the same fields
    as `access_fields` (built straight into the line: one per request); every text field
    escaped (a decoded path may hold %0a, and must not start a forged line of its own;
    a `"` cannot close the quotes around a field)."""
    headers = request.headers
    # The path only: a signed URL's query is a credential.
    request_line = f"{request.method} {request.path} {_protocol(request)}"
    return (
        f"{escape(client_of(request, trusted))} - - [{CLOCK.combined(time.time() - seconds)}] "
        f"{_quoted(request_line)} {status} {sent} "
        f"{_quoted(headers.get(hdrs.REFERER))} {_quoted(headers.get(hdrs.USER_AGENT))} "
        f"{round(seconds * 1000, 1):.1f}ms {escape(served_from)}"
    )


def _protocol(request: web.BaseRequest) -> str:
    version = request.version
    return f"HTTP/{version.major}.{version.minor}"


def _quoted(value: object) -> str:
    return '"-"' if value is None else f'"{escape(value)}"'


def client_of(request: web.BaseRequest, trusted: tuple[Network, ...]) -> str:
    """The client's address, as the log shows it (`proxies.client_address`): the peer's,
    or the one X-Forwarded-For or Forwarded names behind a trusted proxy."""
    forwarded = [node["for"] for node in _forwarded(request) if "for" in node]
    return client_address(
        request.remote, request.headers.get(hdrs.X_FORWARDED_FOR), trusted, forwarded
    )


def _forwarded(request: web.BaseRequest) -> tuple[Mapping[str, str], ...]:
    """RFC 7239 Forwarded, parsed by aiohttp (nothing when it has none)."""
    if hdrs.FORWARDED not in request.headers:
        return ()
    return request.forwarded


def _own_route(request: web.BaseRequest) -> bool:
    route = request.match_info.route if isinstance(request, web.Request) else None
    return route is not None and route.name in OWN_ROUTES


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


class LineFormatter(logging.Formatter):
    """Access log lines as they are (they carry their own time: a prefix would make a
    JSON line no JSON); every other line with time, level and logger."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        if record.name == log.name:
            return record.getMessage()
        return super().format(record)


def configure_logging(level: str = "info") -> None:
    """Log lines to stderr at `level` (`config.LOG_LEVELS`; the access log is INFO: `warning`
    turns it off), in every process that serves."""
    handler = logging.StreamHandler()
    handler.setFormatter(LineFormatter())
    logging.basicConfig(handlers=[handler])
    logging.getLogger().setLevel(level.upper())
