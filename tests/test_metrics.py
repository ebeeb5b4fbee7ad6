"""The metrics of one process (no sockets): names, labels, and what a scrape adds up."""

from __future__ import annotations

import os

from prometheus_client import CollectorRegistry, generate_latest

from pulp_content.service.metrics import Metrics, ServiceProcesses, live_pids, parse
from tests.helpers import metric_samples


def test_two_services_in_one_process_keep_their_counts_apart():
    one, other = Metrics(), Metrics()
    one.request_done("shared download", 206, 0.2, 1000)
    one.request_done("-", 404, 0.001, 150)
    one.cache_event("hits")
    assert parse(other.render().decode()).get("requests", 0) == 0
    counted = parse(one.render().decode())
    assert counted["requests"] == 2 and counted["sent_bytes"] == 1150
    assert counted["resolution_cache_hits"] == 1
    samples = metric_samples(one.render().decode())
    duration = "pulp_content_request_duration_seconds_count"
    assert samples[(duration, (("served_from", "shared_download"), ("status", "2xx")))] == 1
    assert samples[(duration, (("served_from", "none"), ("status", "4xx")))] == 1
    assert not [key for key in samples if key[0].endswith("_created")]


def test_process_metrics_of_several_processes_add_up():
    registry = CollectorRegistry()
    ServiceProcesses(lambda: [os.getpid()], registry)
    alone = metric_samples(generate_latest(registry).decode())
    registry = CollectorRegistry()
    ServiceProcesses(lambda: [os.getpid(), os.getpid(), 2**22 + 1], registry)  # one gone
    twice = metric_samples(generate_latest(registry).decode())
    rss = ("process_resident_memory_bytes", ())
    assert twice[rss] >= 2 * alone[rss] * 0.9
    start = ("process_start_time_seconds", ())
    assert twice[start] == alone[start]  # the earliest, not a sum
    assert twice[("process_max_fds", ())] == alone[("process_max_fds", ())]


def test_live_workers_are_those_with_live_gauge_files(tmp_path):
    for name in ("gauge_livesum_11.db", "gauge_livesum_12.db", "counter_13.db", "x_14.db"):
        (tmp_path / name).write_bytes(b"")
    assert live_pids(str(tmp_path)) == [11, 12]
