"""Basic-auth password checks: hashed on a small pool of their own, bounded, and limited
per client address.

PBKDF2 is slow on purpose (about 0.1 s a check). Run where every request is resolved, a
few clients guessing passwords would queue everyone else behind their hashes; here they
queue only behind each other, a full queue answers 503 at once, and an address that keeps
failing is answered 429 without any hashing at all.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from pulp_content.service.guards import PasswordCheck, Refusal, password_matches, wrong_password

THREAD_NAME = "pulp-content-password"
# Remember verified credentials this long: a client downloading a repository sends the
# same ones hundreds of times, and each check costs as much as the first.
VERIFIED_FOR = 300.0
MAX_REMEMBERED = 10_000


def pool_size() -> int:
    """Hashing threads per process: half the CPUs, so serving keeps the other half."""
    return max(1, (os.cpu_count() or 2) // 2)


class FailureLimit:
    """Failed attempts per client address in a sliding window; a full window blocks."""

    def __init__(
        self,
        limit: int,
        window: float,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = MAX_REMEMBERED,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._capacity = capacity
        self._failures: dict[str, collections.deque[float]] = {}

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may try again; 0 when it may now."""
        failures = self._recent(_key(address))
        if self.limit <= 0 or failures is None or len(failures) < self.limit:
            return 0
        return max(1, math.ceil(failures[0] + self.window - self._clock()))

    def failed(self, address: str) -> None:
        if self.limit <= 0:
            return
        key = _key(address)
        failures = self._recent(key)
        if failures is None:
            if len(self._failures) >= self._capacity:
                self._evict()
            failures = self._failures[key] = collections.deque(maxlen=self.limit)
        failures.append(self._clock())

    def _recent(self, key: str) -> collections.deque[float] | None:
        failures = self._failures.get(key)
        if failures is None:
            return None
        horizon = self._clock() - self.window
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            del self._failures[key]
            return None
        return failures

    def _evict(self) -> None:
        """Make room: forget addresses whose window has passed, else the oldest one."""
        for key in list(self._failures):
            self._recent(key)
        if len(self._failures) >= self._capacity:
            del self._failures[next(iter(self._failures))]


def _key(address: str) -> str:
    """What failures are counted by: the address, or its /64 for IPv6 (one host usually
    holds a whole /64, and could otherwise step through it)."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.ip_network(f"{parsed}/64", strict=False))
    return str(parsed)


class Passwords:
    """Runs PasswordChecks for the event loop: never on it, never on the resolver's thread."""

    def __init__(
        self,
        limit: FailureLimit,
        threads: int | None = None,
        backlog: int = 0,
        matches: Callable[[PasswordCheck], bool] = password_matches,
        hashed: Callable[[int], None] | None = None,
    ) -> None:
        threads = threads or pool_size()
        self._hashed = hashed  # told the iterations of each hash (the service's metrics)
        self.limit = limit
        self._matches = matches
        self.executor = ThreadPoolExecutor(threads, thread_name_prefix=THREAD_NAME)
        self.threads = threads
        # Checks queued or running; beyond this a new one is refused (503), not queued.
        self.backlog = backlog or 8 * threads
        self._in_flight = 0
        self._lock = threading.Lock()  # the pool's threads release what the loop takes
        self._verified: collections.OrderedDict[str, float] = collections.OrderedDict()
        self.hashes = 0  # KDF runs, for /metrics
        self.hash_iterations = 0

    async def verify(self, attempt: PasswordCheck, client: str) -> Refusal | None:
        """None if the password is right, else a 401, 429 or 503 refusal."""
        # The limit comes first: a remembered credential must not answer while an
        # address is blocked, or guessing would go on for free.
        wait = self.limit.retry_after(client)
        if wait:
            return Refusal("too many failed attempts", 429, retry_after=wait)
        if self._remembered(attempt.cache_key):
            return None
        if not self._take_slot():
            return Refusal("too many password checks in progress", 503, retry_after=1)
        job = self._submit(attempt)
        matched = await asyncio.wrap_future(job)
        self.hashes += 1
        self.hash_iterations += attempt.iterations
        if self._hashed is not None:
            self._hashed(attempt.iterations)
        if not matched:
            self.limit.failed(client)
            return wrong_password(attempt)
        # No reset on success: logging in to one's own account between guesses must not
        # restart the count. Failures simply age out of the window.
        self._remember(attempt.cache_key)
        return None

    @property
    def in_flight(self) -> int:
        """Checks queued or running on the pool now."""
        return self._in_flight

    def _take_slot(self) -> bool:
        with self._lock:
            if self._in_flight >= self.backlog:
                return False
            self._in_flight += 1
            return True

    def _free_slot(self, _job: object = None) -> None:
        with self._lock:
            self._in_flight -= 1

    def _submit(self, attempt: PasswordCheck) -> Future[bool]:
        try:
            job = self.executor.submit(self._matches, attempt)
        except BaseException:
            self._free_slot()
            raise
        # The slot is freed when the hash is done (or cancelled before it began), not
        # when the request gives up waiting: the pool's queue stays bounded.
        job.add_done_callback(self._free_slot)
        return job

    def _remembered(self, key: str) -> bool:
        until = self._verified.get(key)
        if until is None:
            return False
        if until < time.monotonic():
            del self._verified[key]
            return False
        return True

    def _remember(self, key: str) -> None:
        self._verified[key] = time.monotonic() + VERIFIED_FOR
        self._verified.move_to_end(key)
        while len(self._verified) > MAX_REMEMBERED:
            self._verified.popitem(last=False)

    def close(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=True)
