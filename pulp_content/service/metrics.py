"""The service's metrics, in Prometheus text format: one scrape shows the whole service.

Under gunicorn (`serve --workers N`) prometheus_client runs in its multiprocess mode:
every worker writes its values into memory-mapped files in PROMETHEUS_MULTIPROC_DIR
(`service.gunicorn_hooks` gives the directory its life) and a scrape, whichever worker
answers it, merges every process's files. Counters add up across workers, the ones of
workers that exited included; the gauges of what is going on now (`livesum`) count
live workers only. The `process_*` metrics are read from /proc for the master and each
live worker and added up (start time: the earliest, the master's). One process
(`serve`, the redirect design's two processes, the tests' in-process servers) keeps its
values in memory, in a registry of its own, so two services in one process never mix
their counts.

Nothing here imports aiohttp or Django.
"""

from __future__ import annotations

import glob
import os
import re
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    values,
)
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from pulp_content.service import queries

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Seconds. From a warm answer from memory (well under a millisecond) to a slow client's
# download of a large file; each bucket is a series per label pair, so no more than these.
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# The access log's served-from values (keys.SERVED_FROM), as label values.
NOT_SERVED = "none"  # no bytes of a file: a 404, a listing, a redirect, a refusal


def status_class(status: int) -> str:
    """`2xx`, `4xx`, ...: a bounded label, where the status itself would not be."""
    return f"{status // 100}xx"


def served_label(served_from: str) -> str:
    """The access log's served-from as a label value (`shared download` -> `shared_download`)."""
    return NOT_SERVED if served_from == "-" else served_from.replace(" ", "_")


class Metrics:
    """What one service counts. Statements sent to the database are counted per process
    (`queries`), whichever service in it sent them."""

    def __init__(self) -> None:
        # No `_created` series: the multiprocess mode has none, so one process shows none.
        disable_created_metrics()
        # The multiprocess directory, when prometheus_client writes its values there:
        # decided once, when it was first imported (a variable set later changes nothing).
        self.directory = multiprocess_directory()
        self.registry = CollectorRegistry(auto_describe=True)
        # The gunicorn master (None: this process is the whole service).
        self.master: int | None = None
        self.requests = Histogram(
            "pulp_content_request_duration_seconds",
            "Requests from their arrival to their last byte sent, by where the bytes came "
            "from and status class (the service's own /metrics and probes apart).",
            ["served_from", "status"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.sent_bytes = Counter(
            "pulp_content_sent_bytes",
            "Bytes sent in those responses, headers included, by where they came from.",
            ["served_from"],
            registry=self.registry,
        )
        # (served-from, status // 100) -> its two series; both values come from the code,
        # never from a client, so there are a handful.
        self._request_series: dict[tuple[str, int], tuple[Histogram, Counter]] = {}
        self._upstream()
        self._downloads()
        self._resolution_cache()
        self._passwords()
        for counter in queries.metric_counters():
            self.registry.register(counter)
        ServiceProcesses(lambda: [os.getpid()], self.registry)

    def _upstream(self) -> None:
        self.upstream_requests = Counter(
            "pulp_content_upstream_requests",
            "Requests to upstream remotes: each GET or HEAD, its redirects included.",
            ["remote"],
            registry=self.registry,
        )
        self.upstream_received_bytes = Counter(
            "pulp_content_upstream_received_bytes",
            "Body bytes received from upstream remotes, counted as each response ends.",
            ["remote"],
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            "pulp_content_upstream_failures",
            "Those that failed: no answer, an error status, a body cut short.",
            ["remote"],
            registry=self.registry,
        )

    def _downloads(self) -> None:
        self.downloads_in_flight = Gauge(
            "pulp_content_downloads_in_flight",
            "Upstream downloads running now (one per artifact, whoever follows it).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.download_followers = Gauge(
            "pulp_content_download_followers",
            "Requests following a download now (sent its bytes as they arrive).",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.verification_failures = Counter(
            "pulp_content_verification_failures",
            "Downloads whose size or digests were not what the remote artifact promised.",
            ["remote"],
            registry=self.registry,
        )
        self.workers = Gauge(
            "pulp_content_worker_processes",
            "Processes serving requests.",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.workers.set(1)

    def _resolution_cache(self) -> None:
        name, help_text = "pulp_content_resolution_cache_", "Requests whose resolution {}."
        self.cache_hits = Counter(
            name + "hits", help_text.format("came from the cache"), registry=self.registry
        )
        self.cache_misses = Counter(
            name + "misses", help_text.format("asked the database"), registry=self.registry
        )
        self.cache_invalidations = Counter(
            name + "invalidations",
            "Changes that dropped resolutions from the cache.",
            registry=self.registry,
        )
        # cache_event's counters by name (each warm request reports a hit).
        self._cache_events = {
            "hits": self.cache_hits,
            "misses": self.cache_misses,
            "invalidations": self.cache_invalidations,
        }

    def _passwords(self) -> None:
        self.password_hashes = Counter(
            "pulp_content_password_hashes",
            "Basic-auth passwords hashed (unknown users too).",
            registry=self.registry,
        )
        self.password_hash_iterations = Counter(
            "pulp_content_password_hash_iterations",
            "PBKDF2 iterations of those hashes: the CPU they cost.",
            registry=self.registry,
        )

    # -- what the service reports ----------------------------------------------------------
    def request_done(self, served_from: str, status: int, seconds: float, sent: int) -> None:
        key = (served_from, status // 100)
        series = self._request_series.get(key)
        if series is None:  # labels() checks and joins its values: once per pair, not per request
            label = served_label(served_from)
            series = (
                self.requests.labels(label, status_class(status)),
                self.sent_bytes.labels(label),
            )
            self._request_series[key] = series
        series[0].observe(seconds)
        series[1].inc(sent)

    def cache_event(self, event: str) -> None:
        """What the resolution cache reports: `hits`, `misses` or `invalidations`."""
        self._cache_events[event].inc()

    def password_hashed(self, iterations: int) -> None:
        self.password_hashes.inc()
        self.password_hash_iterations.inc(iterations)

    # -- a scrape ----------------------------------------------------------------------------
    def render(self) -> bytes:
        """The scrape: every process of the service (see the module's docstring). Reads
        files: call it off the event loop."""
        directory = self.directory
        if directory is None:
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        WorkerFiles(registry, directory)
        ServiceProcesses(lambda: self._processes(directory), registry)
        return generate_latest(registry)

    def _processes(self, directory: str) -> list[int]:
        """The master and its live workers (each keeps a live gauge's file, until the
        master marks it dead: see `service.gunicorn_hooks`)."""
        pids = live_pids(directory)
        if self.master is not None:
            pids.append(self.master)
        return pids


def multiprocess_directory() -> str | None:
    """Where this process's values go: PROMETHEUS_MULTIPROC_DIR if prometheus_client was
    imported with it set (its multiprocess mode), else None (values in memory)."""
    if not values.ValueClass._multiprocess:
        return None
    return os.environ.get(MULTIPROCESS_DIR)


class WorkerFiles(MultiProcessCollector):
    """prometheus_client's merge of every process's files, without the files still empty.
    A process makes its file, then sizes it: read between the two, an empty file would
    fail the whole scrape (prometheus_client reads its first 4 bytes). It holds no values
    yet, and once sized it reads as none until the first is written."""

    def collect(self) -> Iterable[Metric]:
        paths = glob.glob(os.path.join(self._path, "*.db"))
        return self.merge([path for path in paths if not empty(path)], accumulate=True)


def empty(path: str) -> bool:
    """True if the file holds no byte yet (gone counts: a dead worker's live gauges)."""
    try:
        return os.stat(path).st_size == 0
    except FileNotFoundError:
        return True


LIVE_FILE = re.compile(r"gauge_live\w+_(\d+)\.db$")


def live_pids(directory: str) -> list[int]:
    """Processes that keep live gauges in `directory`: the live workers."""
    pids = set()
    for path in glob.glob(os.path.join(directory, "gauge_live*_*.db")):
        found = LIVE_FILE.search(path)
        if found:
            pids.add(int(found.group(1)))
    return sorted(pids)


class ServiceProcesses(Collector):
    """The `process_*` metrics of several processes, as one service's: CPU time, memory
    and descriptors added up, the earliest start time, the largest descriptor limit."""

    COMBINE: dict[str, Callable[[Iterable[float]], float]] = {
        "process_start_time_seconds": min,
        "process_max_fds": max,
    }

    def __init__(
        self, pids: Callable[[], Iterable[int]], registry: CollectorRegistry | None = None
    ) -> None:
        self._pids = pids
        if registry is not None:
            registry.register(self)

    def collect(self) -> Iterator[Metric]:
        families: dict[str, Metric] = {}
        values: dict[str, list[float]] = {}
        for pid in self._pids():
            # A process that ended meanwhile reports nothing (ProcessCollector's OSError).
            for family in ProcessCollector(pid=_constant(pid), registry=None).collect():
                families.setdefault(family.name, family)
                values.setdefault(family.name, []).append(family.samples[0].value)
        for name, family in families.items():
            combine = self.COMBINE.get(family.samples[0].name, sum)
            combined = Metric(family.name, family.documentation, family.type)
            combined.add_sample(family.samples[0].name, {}, combine(values[name]))
            yield combined


def _constant(pid: int) -> Callable[[], int]:
    return lambda: pid


def parse(text: str) -> dict[str, float]:
    """Each `pulp_content_*` counter of a /metrics page summed over its labels, by name
    without the prefix (`database_statements`); a histogram gives its count (`requests`
    for the request duration)."""
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        if not family.name.startswith("pulp_content_"):
            continue
        name = family.name.removeprefix("pulp_content_")
        suffix = {"counter": "_total", "histogram": "_count"}.get(family.type)
        if suffix is None:
            continue
        if family.type == "histogram":
            name = "requests" if name == "request_duration_seconds" else name + "_count"
        for sample in family.samples:
            if sample.name.endswith(suffix):
                totals[name] = totals.get(name, 0.0) + sample.value
    return totals
