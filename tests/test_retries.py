"""The retry decisions, as pure functions: Retry-After in both forms, the backoff, the
caps. What a live upstream and a client see is in functional/test_retries_functional.py."""

from __future__ import annotations

import datetime as dt
import email.utils
import errno

import aiohttp
import pytest

from pulp_content.service.retries import MAX_WAIT, backoff, next_try, retry_after
from pulp_content.service.upstream import transient

NOW = dt.datetime(2026, 11, 30, 9, 0, 0, tzinfo=dt.UTC)


def http_date(when: dt.datetime) -> str:
    return email.utils.format_datetime(when, usegmt=True)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (None, None),
        ("3", 3.0),
        (" 0 ", 0.0),
        (http_date(NOW + dt.timedelta(seconds=7)), 7.0),
        (http_date(NOW - dt.timedelta(seconds=30)), 0.0),  # a date past: now
        ("soon", None),
        ("-1", None),
        ("1.5", None),  # RFC 9110 §10.2.3: delay-seconds is a whole number
        ("", None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(value, seconds):
    assert retry_after(value, NOW) == seconds


def test_retry_after_reads_the_obsolete_date_forms():
    # RFC 9110 §5.6.7: recipients accept RFC 850 and asctime dates too.
    assert retry_after("Monday, 30-Nov-26 09:00:05 GMT", NOW) == 5.0
    assert retry_after("Mon Nov 30 09:00:05 2026", NOW) == 5.0


def test_backoff_doubles_from_a_tenth_of_a_second_with_at_most_half_again_of_jitter():
    assert [backoff(n, 0.0) for n in (1, 2, 3, 4)] == [0.1, 0.2, 0.4, 0.8]
    assert backoff(1, 0.999) == pytest.approx(0.15, abs=1e-3)
    assert backoff(30, 0.0) == 2.0  # bounded


def test_the_asked_wait_is_honoured():
    assert next_try(1, 3, 2.0, left=30, jitter=0.5).wait == 2.0


def test_without_retry_after_the_backoff_is_used():
    assert next_try(2, 3, None, left=30, jitter=0.0).wait == 0.2


def test_a_retry_after_longer_than_the_cap_gives_up_at_once_and_says_why():
    verdict = next_try(1, 3, MAX_WAIT + 50, left=300, jitter=0.0)
    assert verdict.wait is None
    assert "Retry-After 60 s" in verdict.why


def test_the_budget_bounds_every_wait():
    verdict = next_try(1, 3, 5.0, left=4.0, jitter=0.0)
    assert verdict.wait is None and "no time left" in verdict.why


def test_retries_run_out():
    assert next_try(3, 3, None, left=30, jitter=0.0).wait is not None
    verdict = next_try(4, 3, None, left=30, jitter=0.0)
    assert verdict.wait is None and verdict.why == "after 3 retries"
    assert next_try(2, 1, None, left=30, jitter=0.0).why == "after 1 retry"


def test_zero_retries_never_waits_and_adds_nothing_to_the_upstream_answer():
    assert next_try(1, 0, 1.0, left=30, jitter=0.0) == (None, "")


@pytest.mark.parametrize(
    ("exc", "retried"),
    [
        (aiohttp.ServerDisconnectedError(), True),  # closed before the headers
        (aiohttp.ClientOSError(errno.ECONNRESET, "reset"), True),
        (aiohttp.ConnectionTimeoutError(), True),
        (aiohttp.SocketTimeoutError(), False),  # there, but slow: not asked twice
        (TimeoutError(), False),  # the total timeout
        (aiohttp.ClientPayloadError("bad chunk"), False),
        (None, False),  # an UpstreamError of our own (too many redirects)
    ],
)
def test_which_missing_answers_are_retried(exc, retried):
    assert transient(exc) is retried
