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
