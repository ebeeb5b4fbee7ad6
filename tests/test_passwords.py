"""Basic-auth password checks: equal work for unknown users, hashing on a bounded pool of
its own, and failures limited per client address."""

from __future__ import annotations

import asyncio
import base64
import threading

import pytest

from pulp_content.service import guards
from pulp_content.service.passwords import THREAD_NAME, FailureLimit, Passwords

USERS = {"alice": guards.hash_password("s3cret-pw")}


def attempt(user: str, password: str) -> guards.PasswordCheck:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    facts = guards.RequestFacts("/p", {"Authorization": f"Basic {token}"})
    verdict = guards.check("basic", {"users": USERS}, facts)
    assert isinstance(verdict, guards.PasswordCheck)
    return verdict


def test_an_unknown_user_costs_the_same_kdf_as_a_known_one():
    known, unknown = attempt("alice", "wrong"), attempt("mallory", "wrong")
    assert unknown.iterations == known.iterations == guards.PBKDF2_ITERATIONS
    assert unknown.stored.split("$")[0] == known.stored.split("$")[0] == "pbkdf2_sha256"
    assert not guards.password_matches(unknown)
    assert guards.password_matches(attempt("alice", "s3cret-pw"))
    assert not guards.password_matches(attempt("alice", "wrong"))


def test_no_password_in_a_check_repr():
    assert "s3cret" not in repr(attempt("alice", "s3cret-pw"))


def test_check_now_hashes_in_place():
    facts = guards.RequestFacts(
        "/p", {"Authorization": "Basic " + base64.b64encode(b"alice:s3cret-pw").decode()}
    )
    assert guards.check_now("basic", {"users": USERS}, facts) is None
    wrong = guards.RequestFacts(
        "/p", {"Authorization": "Basic " + base64.b64encode(b"bob:x").decode()}
    )
    refusal = guards.check_now("basic", {"users": USERS}, wrong)
    assert refusal is not None and refusal.status == 401


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_failures_fill_a_window_per_address():
    clock = Clock()
    limit = FailureLimit(3, 60, clock)
    for _ in range(3):
        assert limit.retry_after("192.0.2.1") == 0
        limit.failed("192.0.2.1")
        clock.now += 10
    assert limit.retry_after("192.0.2.1") == 30  # the first failure leaves the window then
    assert limit.retry_after("192.0.2.2") == 0
    clock.now += 30
    assert limit.retry_after("192.0.2.1") == 0


def test_ipv6_failures_count_per_64():
    limit = FailureLimit(2, 60, Clock())
    limit.failed("2001:db8::1")
    limit.failed("2001:db8::2")
    assert limit.retry_after("2001:db8::ffff") > 0
    assert limit.retry_after("2001:db8:0:1::1") == 0


def test_zero_disables_the_limit():
    off = FailureLimit(0, 60, Clock())
    for _ in range(10):
        off.failed("192.0.2.1")
    assert off.retry_after("192.0.2.1") == 0


def test_the_table_of_addresses_is_bounded():
    limit = FailureLimit(1, 60, Clock(), capacity=100)
    for n in range(1000):
        limit.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(limit._failures) <= 100


async def test_hashing_runs_on_the_bounded_pool_and_overflow_is_refused():
    """Checks run on the pool's threads; while they are busy, at most `backlog` wait and
    the next one is refused at once instead of queueing."""
    release, threads = threading.Event(), []

    def blocking_matches(check: guards.PasswordCheck) -> bool:
        threads.append(threading.current_thread().name)
        release.wait(30)
        return guards.password_matches(check)

    passwords = Passwords(FailureLimit(100, 60), threads=1, backlog=3, matches=blocking_matches)
    try:
        waiting = [
            asyncio.ensure_future(passwords.verify(attempt("alice", "wrong"), f"192.0.2.{n}"))
            for n in range(3)
        ]
        await asyncio.sleep(0)
        overflow = await passwords.verify(attempt("alice", "wrong"), "192.0.2.9")
        assert overflow is not None and (overflow.status, overflow.retry_after) == (503, 1)
        assert not any(task.done() for task in waiting)
        release.set()
        results = await asyncio.gather(*waiting)
        assert [r.status for r in results if r is not None] == [401, 401, 401]
        assert threads and all(name.startswith(THREAD_NAME) for name in threads)
        assert passwords.hashes == 3
        assert await passwords.verify(attempt("alice", "s3cret-pw"), "192.0.2.1") is None
    finally:
        release.set()
        passwords.close()


async def test_a_blocked_address_gets_429_without_hashing_even_when_right():
    passwords = Passwords(FailureLimit(2, 60), threads=1)
    try:
        for _ in range(2):
            refusal = await passwords.verify(attempt("alice", "wrong"), "192.0.2.1")
            assert refusal is not None and refusal.status == 401
        hashed = passwords.hashes
        blocked = await passwords.verify(attempt("alice", "s3cret-pw"), "192.0.2.1")
        assert blocked is not None and blocked.status == 429 and blocked.retry_after
        assert passwords.hashes == hashed
        assert await passwords.verify(attempt("alice", "s3cret-pw"), "192.0.2.2") is None
    finally:
        passwords.close()


@pytest.mark.parametrize("stored", ["plain-text", "md5$1$x$y", "pbkdf2_sha256$x$y$z"])
def test_a_malformed_stored_hash_refuses(stored):
    facts = guards.RequestFacts(
        "/p", {"Authorization": "Basic " + base64.b64encode(b"alice:x").decode()}
    )
    verdict = guards.check("basic", {"users": {"alice": stored}}, facts)
    assert isinstance(verdict, guards.Refusal) and "misconfigured" in verdict.reason


async def test_a_success_between_guesses_does_not_restart_the_count():
    passwords = Passwords(FailureLimit(3, 60), threads=1)
    try:
        for password in ("guess-1", "guess-2", "s3cret-pw", "guess-3"):
            await passwords.verify(attempt("alice", password), "192.0.2.1")
        blocked = await passwords.verify(attempt("alice", "guess-4"), "192.0.2.1")
        assert blocked is not None and blocked.status == 429
    finally:
        passwords.close()
