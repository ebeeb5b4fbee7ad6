"""Upstream requests for a herd of `apt-get update` through a pull-through distribution.

    python -m tests.perf.apt_herd [--clients 100] [--workers 2]

Real `apt-get update` processes, each with an apt of its own, all at once against
`serve --workers N` in front of the fixture remote: first on a cold service, then again
within the copies' max age, then again once it has passed (the remote's
`--metadata-max-age 30`). Prints the upstream GETs per file for each round; the target is
one per file when cold, none within the max age, and one revalidation per mutable file
after it. Needs apt-get, dpkg-deb, dpkg-scanpackages and apt-ftparchive (Debian).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from pulp_content.cli.common import free_port
from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import wait_listening
from pulp_content.fixtures.remote import FixtureRemote
from tests.functional.test_apt_functional import flat_repository, private_apt

CLI = [sys.executable, "-m", "pulp_content.cli"]
MAX_AGE = 30  # seconds: longer than a round of 100 clients takes here (about 10)


def herd(clients: int, line: str, work: Path, round_name: str) -> int:
    """`clients` apt-get updates at once; how many failed."""
    envs = [private_apt(work / round_name / str(i), line) for i in range(clients)]

    def update(env: dict[str, str]) -> int:
        done = subprocess.run(
            ["apt-get", "update"], env=env, capture_output=True, text=True, timeout=300
        )
        # An `InRelease` the upstream lacks is an `Ign:` line; any `Err:` is a failure.
        return int(done.returncode != 0 or "Err:" in done.stdout)

    with ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(update, envs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="apt-herd-"))
    env = {**os.environ, "PULP_CONTENT_HOME": str(work / "home")}
    upstream = FixtureRemote()
    with Background(upstream):
        files = flat_repository(work)
        upstream.add_repository("deb", files)
        run = lambda *a: subprocess.run([*CLI, *a], env=env, check=True, capture_output=True)  # noqa: E731
        run("migrate")
        run("remote", "create", "deb", "--url", upstream.base_url + "/deb/",
            "--policy", "on_demand", "--metadata-max-age", str(MAX_AGE))  # fmt: skip
        run("distribution", "create", "deb", "--base-path", "deb", "--remote", "deb")
        port = free_port()
        serve = subprocess.Popen(
            [*CLI, "serve", "--workers", str(args.workers), "--bind", f"127.0.0.1:{port}"],
            env={**env, "PULP_CONTENT_LOG_LEVEL": "warning"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, serve)
            line = f"deb [trusted=yes] http://127.0.0.1:{port}/pulp/content/deb/ ./"
            names = ["InRelease", "Release", "Packages"]
            report: dict[str, object] = {"clients": args.clients, "workers": args.workers}
            seen = {name: 0 for name in names}
            fetched = time.monotonic()  # when the cold round began: the copies' age
            for round_name in ("cold", "within_max_age", "after_max_age"):
                if round_name == "after_max_age":
                    # A measurement, not a test: the copies' age must pass.
                    time.sleep(max(0.0, MAX_AGE + 1 - (time.monotonic() - fetched)))
                started = time.monotonic()
                failures = herd(args.clients, line, work, round_name)
                counts = {name: upstream.count(f"/deb/{name}") - seen[name] for name in names}
                seen = {name: upstream.count(f"/deb/{name}") for name in names}
                if round_name == "within_max_age":
                    assert time.monotonic() - fetched < MAX_AGE, "a round took too long"
                report[round_name] = {
                    "upstream_gets": counts,
                    "failed_clients": failures,
                    "seconds": round(time.monotonic() - started, 2),
                }
            print(json.dumps(report, indent=2))
        finally:
            serve.terminate()
            serve.wait(timeout=60)


if __name__ == "__main__":
    main()
