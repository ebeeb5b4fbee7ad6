"""The project's checks, the same on a laptop and in CI (`.ci/run` calls `nox`)."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests", "perf"]
nox.options.error_on_missing_interpreters = True
# uv builds each session's environment in seconds where pip takes a minute (five sessions
# in CI); without uv installed, virtualenv and pip as before.
nox.options.default_venv_backend = "uv|virtualenv"
DATABASES = ["sqlite", "postgres"]


@nox.session
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy over the service, the CLI and the fixtures."""
    session.install("-e", ".[test]", "mypy>=1.11", "django-stubs>=5.1")
    session.run("mypy")


def _pytest(session: nox.Session, database: str, *args: str) -> None:
    # pip too: the real-client tests run it as a user would (uv's environments have none).
    session.install(".[test]", "pip")
    env = {
        "PULP_CONTENT_TEST_DATABASE": database,
        # On PostgreSQL the functional tests talk to `serve --workers 2`, as deployed;
        # on SQLite to one worker in the test process.
        "PULP_CONTENT_TEST_WORKERS": "2" if database == "postgres" else "1",
        "PERF_OUT": "perf-results",
    }
    session.run("pytest", *args, *session.posargs, env=env)


# Two test processes, each with its own database, home and fixture remote: most of a
# functional test is waiting on a process it started, so this halves the wall time.
PARALLEL = ("-n", "2")


@nox.session
@nox.parametrize("database", DATABASES)
def tests(session: nox.Session, database: str) -> None:
    """Unit and functional tests, on SQLite and on PostgreSQL."""
    _pytest(session, database, "tests", *PARALLEL)


@nox.session
@nox.parametrize("database", DATABASES)
def functional(session: nox.Session, database: str) -> None:
    """Only the black-box tests against a running service and the live fixture remote."""
    _pytest(session, database, "tests", "-m", "functional", *PARALLEL)


@nox.session
@nox.parametrize("database", DATABASES)
def perf(session: nox.Session, database: str) -> None:
    """`pulp-content bench --quick` on both designs; JSON and PNG kept in perf-results/."""
    _pytest(session, database, "tests/perf", "-m", "perf")


@nox.session
def measure(session: nox.Session) -> None:
    """The README's service figures (wrk and first lazy fetches; needs wrk installed)."""
    session.install(".[test]")
    session.run("python", "-m", "tests.perf.measure", "--out", "perf-results", *session.posargs)
