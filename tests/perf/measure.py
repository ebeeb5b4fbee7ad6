"""Measure the merged service on this machine; report figures and ratios from one run.

    python -m tests.perf.measure [--out DIR] [--quick] [--only service|streaming]

service (needs wrk and nginx):
- warm (the resolution cache answers) stored 4 KiB artifact, repeated 404, listing:
  requests/s with `wrk -t2 -c32` against one `pulp-content serve` worker, beside nginx
  serving the same stored file and the fixture remote serving it, in the same run; the
  single-connection p50 (`wrk -t1 -c1`); the same stored file with `serve --workers 2`,
  and with the small-file cache off (read on a thread each time);
- cold: distinct stored files and distinct 404s (each resolved once by the database);
- the service's RSS after 200 s of distinct 404 paths (the negative cache is bounded);
- first lazy (on_demand) 1 MiB fetch: latency through the service against the same
  download straight from the fixture remote, interleaved, and their ratio.

streaming:
- upstream downloads for 50 concurrent clients of one uncached 100 MiB artifact;
- time to first byte of a Range in the middle of an uncached 1 GiB artifact, against the
  same range straight from the fixture remote (interleaved, each after a quiet spell);
- lazy streaming throughput against the direct download (curl, in pairs: as they come,
  and after warming this VM's memory, see measure_streaming), and a late joiner's;
- the service process's peak RSS (VmHWM) after all of it.

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
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pulp_content.fixtures.bench import (
    CLI,
    database,
    fixture_remote,
    free_port,
    load,
    wait_listening,
)

MiB = 1024 * 1024


def postgres_server() -> str | None:
    url = os.environ.get("PULP_CONTENT_DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@dataclass
class Running:
    port: int  # the service
    upstream: int  # the fixture remote
    pid: int  # the service process
    database: str
    home: Path
    pool: int = 0  # `serve --workers N` on the same database, when asked for
    cold: int = 0  # a service with its cache off, on the same database
    files_off: int = 0  # a service with its resolution cache, but no small files kept

    def settle(self, timeout: float = 600) -> None:
        """Wait until no download is in progress (background ones included)."""
        deadline = time.monotonic() + timeout
        while any((self.home / "storage" / "tmp").glob("*.partial")):
            if time.monotonic() > deadline:
                raise RuntimeError("downloads still running")
            time.sleep(0.1)

    def upstream_gets(self, path: str) -> int:
        conn = http.client.HTTPConnection("127.0.0.1", self.upstream, timeout=30)
        conn.request("GET", "/_stats")
        stats = json.loads(conn.getresponse().read())
        conn.close()
        return sum(s["count"] for s in stats if s["method"] == "GET" and s["path"] == path)

    def peak_rss_mib(self) -> float:
        status = Path(f"/proc/{self.pid}/status").read_text()
        match = re.search(r"VmHWM:\s+(\d+) kB", status)
        return round(int(match.group(1)) / 1024, 1) if match else -1.0


@contextmanager
def running(repos: list[tuple[str, int, int, str]], workers: int = 1) -> Iterator[Running]:
    """The fixture remote serving `repos` (name, count, size, policy), each synced,
    published and distributed at /pulp/content/<name>/, and one service process (and,
    with `workers` > 1, a `serve --workers N` beside it on the same database: `r.pool`)."""
    home = Path(tempfile.mkdtemp(prefix="pulp-content-perf-"))
    processes: list[subprocess.Popen[str]] = []
    try:
        served = {name: (count, size) for name, count, size, _ in repos}
        with database(postgres_server(), home) as url, fixture_remote(served, seed=2) as upstream:
            env = {**os.environ, "PULP_CONTENT_HOME": str(home), "PULP_CONTENT_DATABASE_URL": url}
            load(env, upstream.manifests, {name: policy for name, _, _, policy in repos})
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
            # The same service with its resolution cache off: every request asks the
            # database, as before the cache (the cold figures); and with the cache but no
            # small files in memory (each read on a thread, as before the file cache).
            variants = {
                "cold": {"PULP_CONTENT_CACHE_SIZE": "0", "PULP_CONTENT_NEGATIVE_CACHE_SIZE": "0"},
                "files_off": {"PULP_CONTENT_FILE_CACHE_SIZE": "0"},
            }
            ports = {}
            for name, overrides in variants.items():
                ports[name] = free_port()
                processes.append(
                    subprocess.Popen(
                        [*CLI, "serve", "--bind", f"127.0.0.1:{ports[name]}"],
                        env={**env, **overrides},
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        text=True,
                    )
                )
                wait_listening(ports[name], processes[-1])
            pool = 0
            if workers > 1:
                pool = free_port()
                processes.append(
                    subprocess.Popen(
                        [*CLI, "serve", "--workers", str(workers), "--bind", f"127.0.0.1:{pool}"],
                        env=env,
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                        text=True,
                    )
                )
                wait_listening(pool, processes[-1])
            kind = "postgresql" if "postgres" in url else "sqlite"
            cold, files_off = ports["cold"], ports["files_off"]
            yield Running(port, upstream.port, service.pid, kind, home, pool, cold, files_off)
    finally:
        for process in processes:
            process.terminate()
            process.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def wrk(url: str, seconds: int, connections: int = 32, script: str | None = None) -> float:
    """Requests/s of `wrk -t2 -c32` (or -t1 -c1) against one URL (or a Lua script's)."""
    return _wrk(url, seconds, connections, script)[0]


def _wrk(
    url: str, seconds: int, connections: int = 32, script: str | None = None
) -> tuple[float, float]:
    threads = min(2, connections)
    args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", url]
    if script is not None:
        args[1:1] = ["-s", script]
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors and script is None and "/missing" not in url:
        raise RuntimeError(f"wrk saw {errors.group(1)} failed responses:\n{out}")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    assert rps and p50, out
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p50.group(2)]
    return float(rps.group(1)), round(float(p50.group(1)) * scale, 3)


def p50_single_connection(url: str, seconds: int) -> float:
    """Median latency in ms of `wrk -t1 -c1` (one connection, one request at a time)."""
    return _wrk(url, seconds, 1)[1]


@contextmanager
def nginx_serving(root: Path) -> Iterator[int]:
    """nginx (one worker) serving files under `root` statically, on a free port."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    tmp = Path(tempfile.mkdtemp(prefix="pulp-content-nginx-"))
    conf = tmp / "nginx.conf"
    # As root nginx's worker would run as nobody, who cannot read a private temporary home.
    user = "user root;" if os.geteuid() == 0 else ""
    conf.write_text(
        f"""daemon off; {user} worker_processes 1; pid {tmp}/nginx.pid; error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{ access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; root {root}; }} }}
"""
    )
    process = subprocess.Popen([binary, "-c", str(conf), "-p", str(tmp)])
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(tmp, ignore_errors=True)


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return round(int(match.group(1)) / 1024, 1) if match else -1.0


@dataclass
class Fetched:
    ttfb: float
    total: float
    size: int


def fetch(
    port: int,
    path: str,
    headers: dict[str, str] | None = None,
    started: threading.Event | None = None,
) -> Fetched:
    """One GET on a fresh connection, body read to the end."""
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    ttfb = time.perf_counter() - start
    size = 0
    while chunk := response.read(MiB):
        size += len(chunk)
        if started is not None and size >= 0:
            started.set()
    conn.close()
    if response.status not in (200, 206):
        raise RuntimeError(f"GET {path}: {response.status}")
    return Fetched(ttfb, time.perf_counter() - start, size)


def curl(port: int, path: str) -> Fetched:
    """One GET with curl, which, unlike a Python client, leaves the CPU to the servers."""
    out = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer} %{time_total} %{size_download}",
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return Fetched(float(out[0]), float(out[1]), int(out[2]))


def rss_under_load(r: Running, files: int, size: int) -> dict[str, object]:
    """Peak RSS of the service while `files` clients each stream a different uncached
    artifact of `size` bytes at once (curl clients, bodies thrown away)."""
    r.settle()
    before = r.peak_rss_mib()
    clients = [
        subprocess.Popen(
            [
                "curl",
                "-sS",
                "-o",
                "/dev/null",
                f"http://127.0.0.1:{r.port}/pulp/content/rss/rss-{i}.bin",
            ]
        )
        for i in range(files)
    ]
    start = time.perf_counter()
    for client in clients:
        client.wait(timeout=1800)
    return {
        "clients": files,
        "artifact_mib": size // MiB,
        "seconds": round(time.perf_counter() - start, 1),
        "failed_clients": sum(1 for c in clients if c.returncode != 0),
        "peak_rss_mib_before": before,
        "peak_rss_mib": r.peak_rss_mib(),
    }


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 2),
        "p90_ms": round(ordered[int(0.9 * (len(ordered) - 1))] * 1000, 2),
    }


def environment(db: str) -> dict[str, object]:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "database": db,
    }


def measure_service(quick: bool) -> dict[str, object]:
    lazy_files = 10 if quick else 40
    seconds = 5 if quick else 10
    stored = "/pulp/content/small/small-0.bin"
    repos = [
        ("small", 1, 4096, "immediate"),
        ("many", 200, 4096, "immediate"),
        ("lazy", lazy_files, MiB, "on_demand"),
    ]
    with running(repos, workers=2) as r:
        base = f"http://127.0.0.1:{r.port}"
        missing_in, missing_out = (
            base + "/pulp/content/small/missing",
            base + "/pulp/content/nowhere/missing",
        )
        direct_url = f"http://127.0.0.1:{r.upstream}/small/small-0.bin"
        files = sorted((r.home / "storage" / "artifact").rglob("*"))
        stored_file = next(f for f in files if f.is_file() and f.stat().st_size == 4096)
        with nginx_serving(r.home / "storage") as nginx:
            nginx_url = f"http://127.0.0.1:{nginx}/{stored_file.relative_to(r.home / 'storage')}"
            figures = {
                "nginx_static_4k": wrk(nginx_url, seconds),
                "warm_stored_4k": wrk(base + stored, seconds),
                "warm_not_found_in_distribution": wrk(missing_in, seconds),
                "warm_not_found_outside": wrk(missing_out, seconds),
                "warm_listing": wrk(base + "/pulp/content/many/", seconds),
                "fixture_remote_4k": wrk(direct_url, seconds),
                "workers_2_warm_stored_4k": wrk(f"http://127.0.0.1:{r.pool}{stored}", seconds),
                "cache_off_stored_4k": wrk(f"http://127.0.0.1:{r.cold}{stored}", seconds),
                "file_cache_off_warm_stored_4k": wrk(
                    f"http://127.0.0.1:{r.files_off}{stored}", seconds
                ),
                "cache_off_not_found": wrk(
                    f"http://127.0.0.1:{r.cold}/pulp/content/small/missing", seconds
                ),
            }
            p50 = {
                "nginx_static_4k": p50_single_connection(nginx_url, seconds),
                "warm_stored_4k": p50_single_connection(base + stored, seconds),
                "cache_off_stored_4k": p50_single_connection(
                    f"http://127.0.0.1:{r.cold}{stored}", seconds
                ),
                "file_cache_off_warm_stored_4k": p50_single_connection(
                    f"http://127.0.0.1:{r.files_off}{stored}", seconds
                ),
            }
        rps = {key: round(value) for key, value in figures.items()}
        direct, merged = [], []
        for i in range(lazy_files):
            # Interleaved, so both see the same machine state.
            direct.append(fetch(r.upstream, f"/lazy/lazy-{i}.bin").total)
            merged.append(fetch(r.port, f"/pulp/content/lazy/lazy-{i}.bin").total)
        lazy_direct, lazy_merged = summary(direct), summary(merged)
        before = rss_mib(r.pid)
        missing = _distinct_404s(r.port, 20 if quick else 200)
        return {
            "environment": environment(r.database),
            "requests_per_s": rps,
            "ratio_to_nginx": {
                key: round(value / figures["nginx_static_4k"], 3) for key, value in figures.items()
            },
            "workers_2_over_1": round(
                figures["workers_2_warm_stored_4k"] / figures["warm_stored_4k"], 2
            ),
            "single_connection_p50_ms": p50,
            "first_lazy_1m": {
                "fetches": lazy_files,
                "service": lazy_merged,
                "direct_from_upstream": lazy_direct,
                "ratio_median": round(lazy_merged["median_ms"] / lazy_direct["median_ms"], 2),
            },
            "distinct_404s": {
                "paths": missing,
                "rss_mib_before": before,
                "rss_mib_after": rss_mib(r.pid),
            },
        }


def _distinct_404s(port: int, seconds: int) -> int:
    """`wrk -t2 -c32` asking for a new missing path every request for `seconds`; returns
    how many it asked for."""
    script = Path(tempfile.mkstemp(prefix="pulp-content-wrk-", suffix=".lua")[1])
    script.write_text(
        """local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", "/pulp/content/small/missing-" .. math.random(1, 1e12) .. "-" .. n)
end
"""
    )
    out = subprocess.run(
        ["wrk", "-t2", "-c32", f"-d{seconds}s", "-s", str(script), f"http://127.0.0.1:{port}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    script.unlink()
    match = re.search(r"(\d+) requests in", out)
    assert match, out
    return int(match.group(1))


def warm_memory(home: Path, size: int) -> None:
    """Write and delete `size` bytes of scratch file: page cache the service's saved files
    land in afterwards is memory this VM has already backed (see below)."""
    block = os.urandom(MiB)
    scratch = home / "scratch"
    with scratch.open("wb") as out:
        for _ in range(size // MiB):
            out.write(block)
    scratch.unlink()


def ttfb_after_a_quiet_spell(port: int, path: str, headers: dict[str, str]) -> float:
    """Time to first byte of one GET after the machine has been idle a moment, as the
    first request after a quiet spell (both sides of a comparison get the same)."""
    time.sleep(0.3)
    return fetch(port, path, headers).ttfb


def measure_streaming(quick: bool) -> dict[str, object]:
    shared_size = 20 * MiB if quick else 100 * MiB
    big_size = 256 * MiB if quick else 1024 * MiB
    flow_size = 50 * MiB if quick else 200 * MiB
    clients = 50
    ranges = 3 if quick else 5
    pairs = 3
    rss_files, rss_size = 20, (64 * MiB if quick else 1024 * MiB)
    repos = [
        ("rss", rss_files, rss_size, "streamed"),
        ("shared", 1, shared_size, "on_demand"),
        ("big", ranges, big_size, "on_demand"),
        ("flow", 2 * pairs + 1, flow_size, "on_demand"),
    ]
    with running(repos) as r:
        # 1. Fifty clients of one uncached artifact.
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            sizes = list(
                pool.map(
                    lambda _: fetch(r.port, "/pulp/content/shared/shared-0.bin").size,
                    range(clients),
                )
            )
        shared_seconds = time.perf_counter() - start
        assert all(size == shared_size for size in sizes)
        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            list(pool.map(lambda _: fetch(r.upstream, "/shared/shared-0.bin"), range(clients)))
        direct_shared_seconds = time.perf_counter() - start

        # 2. A 1 MiB Range in the middle of an uncached artifact: each artifact's range
        # straight from the upstream, then through the service, both after a quiet spell.
        middle = big_size // 2
        rng = {"Range": f"bytes={middle}-{middle + MiB - 1}"}
        direct_ttfb, service_ttfb = [], []
        for i in range(ranges):
            r.settle()  # the previous artifact's background download is saved,
            os.sync()  # and written back: both sides start on a quiet machine
            direct_ttfb.append(ttfb_after_a_quiet_spell(r.upstream, f"/big/big-{i}.bin", rng))
            path = f"/pulp/content/big/big-{i}.bin"
            service_ttfb.append(ttfb_after_a_quiet_spell(r.port, path, rng))
        r.settle()

        # 3. Throughput of one lazy download (curl), direct and through the service, in
        # pairs on fresh artifacts. On this kind of VM, memory the guest has not touched
        # before is slow to fill (the hypervisor backs it on first touch: a plain file
        # write falls from several GB/s to about 400 MiB/s once the backed pages are used
        # up), and only the service writes (it saves the artifact). So: pairs as they
        # come, then pairs after warm_memory(), both reported.
        def pair(i: int) -> tuple[float, float]:
            direct = curl(r.upstream, f"/flow/flow-{i}.bin")
            through = curl(r.port, f"/pulp/content/flow/flow-{i}.bin")
            r.settle()
            os.sync()
            return mib_s(direct), mib_s(through)

        as_they_come = [pair(i) for i in range(pairs)]
        warmed = []
        for i in range(pairs, 2 * pairs):
            warm_memory(r.home, 2 * 1024 * MiB)
            warmed.append(pair(i))

        # 4. A client joining a lazy download half-way (memory warmed, as above).
        warm_memory(r.home, 2 * 1024 * MiB)
        first_done: list[Fetched] = []
        halfway = threading.Event()
        last = f"/pulp/content/flow/flow-{2 * pairs}.bin"

        def first() -> None:
            first_done.append(fetch(r.port, last, started=halfway))

        leader = threading.Thread(target=first)
        leader.start()
        halfway.wait(timeout=120)
        direct_speed = statistics.median(d for d, _ in warmed)
        time.sleep(flow_size / MiB / direct_speed / 2)  # about half-way at the direct speed
        joiner = fetch(r.port, last)
        leader.join()

        return {
            "environment": environment(r.database),
            "concurrent_clients": {
                "clients": clients,
                "artifact_mib": shared_size // MiB,
                "upstream_downloads": r.upstream_gets("/shared/shared-0.bin") - clients,
                "service_seconds": round(shared_seconds, 2),
                "direct_seconds_for_the_same_downloads": round(direct_shared_seconds, 2),
            },
            "range_in_the_middle": {
                "artifact_mib": big_size // MiB,
                "artifacts": ranges,
                "service_ttfb": summary(service_ttfb),
                "direct_ttfb": summary(direct_ttfb),
                "ratio_median": round(
                    statistics.median(service_ttfb) / statistics.median(direct_ttfb), 2
                ),
            },
            "throughput": {
                "artifact_mib": flow_size // MiB,
                "as_they_come": throughput(as_they_come),
                "memory_warmed": throughput(warmed),
                "late_joiner_mib_s": mib_s(joiner),
                "first_client_mib_s": mib_s(first_done[0]),
            },
            "peak_rss_mib_after_the_above": r.peak_rss_mib(),
            "rss_under_load": rss_under_load(r, rss_files, rss_size),
        }


def mib_s(f: Fetched) -> float:
    return round(f.size / MiB / f.total, 1)


def throughput(pairs: list[tuple[float, float]]) -> dict[str, object]:
    direct = statistics.median(d for d, _ in pairs)
    through = statistics.median(t for _, t in pairs)
    return {
        "direct_mib_s": [d for d, _ in pairs],
        "service_mib_s": [t for _, t in pairs],
        "ratio_of_medians": round(through / direct, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--out", default="perf-results")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--only", choices=["service", "streaming"])
    args = parser.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    if args.only != "streaming":
        if shutil.which("wrk") is None:
            raise SystemExit("wrk is not installed (Debian: apt-get install wrk)")
        service = measure_service(args.quick)
        (Path(args.out) / "service.json").write_text(json.dumps(service, indent=2) + "\n")
        print(json.dumps(service, indent=2))
    if args.only != "service":
        streaming = measure_streaming(args.quick)
        (Path(args.out) / "streaming.json").write_text(json.dumps(streaming, indent=2) + "\n")
        print(json.dumps(streaming, indent=2))


if __name__ == "__main__":
    main()
