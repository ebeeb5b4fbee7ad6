"""Measure the merged service on this machine; report figures and ratios from one run.

    python -m tests.perf.measure [--out DIR] [--quick]

- stored 4 KiB artifact: requests/s with `wrk -t2 -c32` against one `pulp-content serve`
  worker (no cache), beside the same wrk run against the fixture remote serving the file;
- first lazy (on_demand) 1 MiB fetch: latency through the service against the same
  download straight from the fixture remote, interleaved, and their ratio.

Everything runs as real processes on 127.0.0.1 with a fresh SQLite home, or with a fresh
database on the PostgreSQL server PULP_CONTENT_DATABASE_URL names (as `bench` does).
Nothing is asserted about time: the figures are printed and written as JSON.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fixtures.bench import CLI, cli, database, free_port, wait_listening


def postgres_server() -> str | None:
    url = os.environ.get("PULP_CONTENT_DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


def wrk(url: str, seconds: int) -> float:
    """Requests/s of `wrk -t2 -c32` against one URL."""
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", url], capture_output=True, text=True, check=True
    ).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    match = re.search(r"Requests/sec:\s+([\d.]+)", out)
    assert match, out
    return float(match.group(1))


def fetch_seconds(port: int, path: str) -> float:
    """Wall time of one GET on a fresh connection, body read to the end."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    elapsed = time.perf_counter() - start
    if response.status != 200 or len(body) != 1024 * 1024:
        raise RuntimeError(f"GET {path}: {response.status}, {len(body)} bytes")
    return elapsed


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
    }


def measure(quick: bool) -> dict[str, object]:
    lazy_files = 10 if quick else 40
    wrk_seconds = 3 if quick else 10
    home = Path(tempfile.mkdtemp(prefix="pulp-content-perf-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        with database(postgres_server(), home) as url:
            env = {**os.environ, "PULP_CONTENT_HOME": str(home), "PULP_CONTENT_DATABASE_URL": url}
            if "postgres" in url:
                cli(env, "migrate")
            fixture_port = free_port()
            fixture = subprocess.Popen(
                [
                    *CLI,
                    "fixture",
                    "serve",
                    "--bind",
                    f"127.0.0.1:{fixture_port}",
                    "--repository",
                    "small:1:4096:1",
                    "--repository",
                    f"lazy:{lazy_files}:1048576:2",
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            processes.append(fixture)
            assert fixture.stdout is not None
            lines = [fixture.stdout.readline().strip() for _ in range(3)]
            manifests = {line.rsplit("/", 2)[-2]: line for line in lines[1:]}
            for name, policy in (("small", "immediate"), ("lazy", "on_demand")):
                cli(env, "remote", "create", name, "--url", manifests[name], "--policy", policy)
                cli(env, "repository", "create", name, "--remote", name)
                cli(env, "repository", "sync", name)
                pub = cli(env, "publication", "create", "--repository", name).split()[-1]
                cli(env, "distribution", "create", name, "--base-path", name, "--publication", pub)
            port = free_port()
            service = subprocess.Popen(
                [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            processes.append(service)
            wait_listening(port, service)

            stored_rps = wrk(f"http://127.0.0.1:{port}/pulp/content/small/small-0.bin", wrk_seconds)
            direct_rps = wrk(f"http://127.0.0.1:{fixture_port}/small/small-0.bin", wrk_seconds)

            direct, merged = [], []
            for i in range(lazy_files):
                # Interleaved, so both see the same machine state.
                direct.append(fetch_seconds(fixture_port, f"/lazy/lazy-{i}.bin"))
                merged.append(fetch_seconds(port, f"/pulp/content/lazy/lazy-{i}.bin"))
            lazy_direct, lazy_merged = summary(direct), summary(merged)
            return {
                "environment": {
                    "python": platform.python_version(),
                    "machine": platform.machine(),
                    "cpus": os.cpu_count(),
                    "database": "postgresql" if "postgres" in url else "sqlite",
                },
                "stored_4k": {
                    "service_requests_per_s": stored_rps,
                    "fixture_remote_requests_per_s": direct_rps,
                },
                "first_lazy_1m": {
                    "fetches": lazy_files,
                    "service": lazy_merged,
                    "direct_from_upstream": lazy_direct,
                    "ratio_median": round(lazy_merged["median_ms"] / lazy_direct["median_ms"], 2),
                },
            }
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="perf-results")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed (Debian: apt-get install wrk)")
    result = measure(args.quick)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "service.json").write_text(json.dumps(result, indent=2) + "\n")
    stored, lazy = result["stored_4k"], result["first_lazy_1m"]
    print(json.dumps(result["environment"]))
    print(
        f"stored 4 KiB, wrk -t2 -c32: service {stored['service_requests_per_s']:.0f} req/s, "  # type: ignore[index]
        f"fixture remote {stored['fixture_remote_requests_per_s']:.0f} req/s"
    )  # type: ignore[index]
    print(
        f"first lazy 1 MiB fetch: service {lazy['service']['median_ms']} ms median, "  # type: ignore[index]
        f"direct {lazy['direct_from_upstream']['median_ms']} ms, "  # type: ignore[index]
        f"ratio {lazy['ratio_median']}x"
    )  # type: ignore[index]


if __name__ == "__main__":
    main()
