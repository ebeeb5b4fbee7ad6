"""When to ask an upstream again before its first byte, and how long to wait first.

Pure decisions (no aiohttp, no clock of their own): `upstream` asks them after each
failed attempt. A client is waiting while a download retries, so every wait is bounded:
a `Retry-After` longer than MAX_WAIT fails at once (waiting that long would hold the
client past what it will put up with), and no wait may end after the remote's total
timeout (or RETRY_BUDGET when the remote has none) since the first attempt began.
"""

from __future__ import annotations

import datetime as dt
import email.utils
from typing import NamedTuple

# RFC 6585 §4 (429) and RFC 9110 §15.6: the answers that say "not now", not "never".
# 501 (not implemented) and 505 (HTTP version) will not change on a second try.
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_RETRIES = 3  # as Pulp's downloaders
MAX_RETRIES = 10  # more would only keep a client waiting: the waits are bounded anyway
MAX_WAIT = 10.0  # seconds: the longest single wait; a longer Retry-After fails at once
RETRY_BUDGET = 30.0  # seconds of retrying for a remote with no total timeout
BACKOFF_FIRST = 0.1  # seconds before the first retry when the upstream gives no time
BACKOFF_MAX = 2.0  # seconds: where the doubling stops


class Verdict(NamedTuple):
    """Wait `wait` seconds and ask again; `wait` None: give up, `why` says why when the
    upstream's own answer does not."""

    wait: float | None
    why: str = ""


def retry_after(value: str | None, now: dt.datetime) -> float | None:
    """RFC 9110 §10.2.3: the seconds a `Retry-After` asks for (delay-seconds or an
    HTTP-date); None when there is none or it cannot be read. A date in the past: 0."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)  # RFC 9110 §5.6.7: HTTP-dates are GMT
    return max(0.0, (when - now).total_seconds())


def backoff(retry: int, jitter: float) -> float:
    """Seconds before retry number `retry` (1, 2, 3…): 0.1, 0.2, 0.4… up to BACKOFF_MAX,
    plus up to half as much again (`jitter` in [0, 1)), so that clients of one failed
    upstream do not all come back in the same instant."""
    base = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** (retry - 1))
    return base * (1 + jitter / 2)


def next_try(retry: int, retries: int, asked: float | None, left: float, jitter: float) -> Verdict:
    """Whether retry number `retry` (1, 2…) of `retries` happens, and after how long.

    `asked`: the upstream's Retry-After in seconds (None: back off exponentially);
    `left`: seconds until the retry budget runs out."""
    if retries == 0:
        return Verdict(None)  # retries turned off: the answer is final, nothing to add
    if retry > retries:
        return Verdict(None, f"after {retries} {'retry' if retries == 1 else 'retries'}")
    if asked is not None and asked > MAX_WAIT:
        return Verdict(
            None, f"Retry-After {asked:g} s is longer than the {MAX_WAIT:g} s a client may wait"
        )
    wait = asked if asked is not None else backoff(retry, jitter)
    if wait > left:
        return Verdict(None, f"no time left to wait {wait:.1f} s before retrying")
    return Verdict(wait)
