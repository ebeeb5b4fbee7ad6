"""The logging filter that turns aiohttp's malformed-request tracebacks into one line; the
access line's own ways to the log and its clock."""

from __future__ import annotations

import datetime as dt
import io
import logging
import time

import pytest
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, LineTooLong

from pulp_content.service.accesslog import (
    AccessLogger,
    Clock,
    LineFormatter,
    OneLineBadRequests,
    _plain_handler,
    log,
)


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


# -- the access line's cheap path: the same line, the same handlers --------------------------

LINE = '127.0.0.1 - - [30/Nov/2026:09:10:11 +0000] "GET /a%s HTTP/1.1" 200 1 "-" "-" 0.1ms -'


class Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def let_through(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return True


def access_logger() -> tuple[logging.Logger, logging.StreamHandler[io.StringIO]]:
    """The access logger in a hierarchy of its own, set up as `configure_logging` sets up
    the real one (pytest's handlers sit on the real root)."""
    root = logging.RootLogger(logging.INFO)
    logger = logging.Manager(root).getLogger(log.name)
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(LineFormatter())
    root.addHandler(handler)
    return logger, handler


def test_the_configured_handler_gets_the_line_as_logging_would_write_it():
    logger, handler = access_logger()
    assert _plain_handler(logger) is handler
    AccessLogger(logger, "")._emit(LINE)
    logger.info(LINE)
    assert handler.stream.getvalue() == LINE + "\n" + LINE + "\n"


@pytest.mark.parametrize("change", ["handler filter", "logger filter", "second handler"])
def test_any_other_set_up_gets_the_record(change):
    """A filter or another handler sees a record, as with `logger.info`."""
    logger, handler = access_logger()
    kept = Kept()
    if change == "handler filter":
        handler.addFilter(kept.let_through)
    elif change == "logger filter":
        logger.addFilter(kept.let_through)
    else:
        logger.addHandler(kept)
    assert _plain_handler(logger) is None
    AccessLogger(logger, "")._emit(LINE)
    [record] = kept.records
    assert record.getMessage() == LINE and record.levelno == logging.INFO
    assert record.name == log.name and record.args == ()
    assert handler.stream.getvalue() == LINE + "\n"


@pytest.fixture
def zone(monkeypatch):
    def use(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield use
    monkeypatch.undo()
    time.tzset()


@pytest.mark.parametrize("name", ["UTC", "Europe/Berlin", "America/St_Johns", "Asia/Kolkata"])
def test_the_time_formatted_once_a_second_is_the_time_of_the_moment(zone, name):
    """What `Clock` keeps per second is what datetime makes of each moment (a change to
    or from summer time included), to the millisecond."""
    zone(name)
    clock = Clock()
    summer_time_ends = 1729990800.0  # 2024-10-27 01:00 UTC
    moments = [summer_time_ends + step / 7 for step in range(-30, 30)]
    moments += [1_700_000_000.9999996, 1_848_093_558.3329995, 0.0005]
    for moment in moments:
        local = dt.datetime.fromtimestamp(moment).astimezone()
        iso = local.isoformat(timespec="milliseconds")
        assert clock.iso(moment) == iso
        assert clock.combined(moment) == local.strftime("%d/%b/%Y:%H:%M:%S %z")
