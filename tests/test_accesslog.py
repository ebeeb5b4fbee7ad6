"""The logging filter that turns aiohttp's malformed-request tracebacks into one line."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from pulp_content.service.accesslog import OneLineBadRequests


def record(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "aiohttp.server",
        logging.ERROR,
        __file__,
        1,
        "Error handling request from %s",
        ("203.0.113.9",),
        (type(exc), exc, None),
    )


def test_a_client_error_becomes_one_info_line():
    line = record(LineTooLong(b"x" * 10_000, 8190))
    assert OneLineBadRequests().filter(line)
    assert line.levelno == logging.INFO and line.exc_info is None
    text = logging.Formatter().format(line)
    assert text.startswith("refused a malformed request from 203.0.113.9: 400 Got more than")
    assert "\n" not in text and len(text) < 250


def test_the_refused_line_escapes_what_the_client_sent():
    line = record(BadHttpMessage("Invalid header value char: \x1b[2J\x85forged"))
    assert OneLineBadRequests().filter(line)
    text = logging.Formatter().format(line)
    assert "\x1b" not in text and "\x85" not in text
    # Whitespace (NEL among it) is folded into one space; the rest is escaped.
    assert len(text.splitlines()) == 1 and text.endswith(r"char: \x1b[2J forged")


def test_other_errors_keep_their_traceback():
    line = record(RuntimeError("a bug"))
    assert OneLineBadRequests().filter(line)
    assert line.levelno == logging.ERROR and line.exc_info is not None
    assert OneLineBadRequests().filter(record(BadStatusLine("GARBAGE")))


def test_the_insufficient_storage_line_escapes_the_path(caplog):
    """A full disk is logged with the client's path: a %0a in it stays on the line."""
    from aiohttp.test_utils import make_mocked_request

    from pulp_content.service.errors import StorageError
    from pulp_content.service.handlers import insufficient_storage

    request = make_mocked_request("GET", "/pulp/content/x/a%0aforged%20line")
    with caplog.at_level(logging.WARNING, logger="pulp_content.service.handlers"):
        response = insufficient_storage(request, StorageError("cannot write to storage"))
    assert response.status == 507
    [line] = [r.getMessage() for r in caplog.records]
    assert "\n" not in line and r"a\x0aforged line" in line
