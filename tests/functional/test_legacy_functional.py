"""The redirect design, run as a user runs it: `serve --design redirect`."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator

import pytest

from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.metrics import parse
from tests.functional.conftest import Client
from tests.helpers import eventually

pytestmark = pytest.mark.functional

FILES = [FileSpec("a.bin", 3000, 31), FileSpec("dir/b.bin", 100, 32)]


class Ports:
    def __init__(self, port: int) -> None:
        self.port = port


@contextlib.contextmanager
def redirect_design(*options: str) -> Iterator[tuple[Client, Client]]:
    """The content app and the streamer, each with a client."""
    port, streamer = free_port(), free_port()
    process = subprocess.Popen(
        [
            *CLI,
            "serve",
            "--design",
            "redirect",
            "--bind",
            f"127.0.0.1:{port}",
            "--streamer-port",
            str(streamer),
            *options,
        ],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_listening(port, process)
        wait_listening(streamer, process)
        yield Client(Ports(port)), Client(Ports(streamer))  # type: ignore[arg-type]
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_stored_and_lazy_content(scenario):
    scenario.publish("eager", FILES[:1], "immediate")
    scenario.publish("lazy", FILES, "on_demand")
    with redirect_design() as (app, streamer):
        stored = app.get("/pulp/content/eager/a.bin")
        assert stored.status == 200 and stored.body == FILES[0].content()

        lazy = app.get("/pulp/content/lazy/dir/b.bin")
        assert lazy.status == 302
        location = lazy.headers["Location"]
        assert location == f"http://127.0.0.1:{streamer.server.port}/streamer/lazy/dir/b.bin"
        streamed = streamer.get(location.split(str(streamer.server.port), 1)[1])
        assert streamed.status == 200 and streamed.body == FILES[1].content()
        # on_demand: the streamer saved it (right after the last byte went out), so the
        # content app serves it itself from then on.
        assert eventually(lambda: app.get("/pulp/content/lazy/dir/b.bin").status == 200)
        again = app.get("/pulp/content/lazy/dir/b.bin")
        assert again.body == FILES[1].content()
        assert scenario.remote.count("/lazy/dir/b.bin") == 1

        assert app.get("/pulp/content/lazy/missing").status == 404
        # Each process has a /metrics of its own (the bench adds them up).
        for client in (app, streamer):
            counted = parse(client.get("/metrics").body.decode())
            assert counted["requests"] >= 1 and counted["database_statements"] >= 1


@pytest.mark.parametrize(
    ("web_server", "header"), [("apache", "X-SENDFILE"), ("nginx", "X-Accel-Redirect")]
)
def test_front_web_server_headers(scenario, web_server, header):
    scenario.publish("eager", FILES[:1], "immediate")
    with redirect_design("--web-server", web_server) as (app, _):
        response = app.get("/pulp/content/eager/a.bin")
    assert response.status == 200 and response.body == b""
    value = response.headers[header]
    if web_server == "apache":
        assert value.startswith(str(scenario.settings.storage_root)) and os.path.isfile(value)
    else:
        assert value.startswith("/pulp/storage/artifact/")


def test_redirect_disabled_answers_404(scenario):
    scenario.publish("lazy", FILES, "on_demand")
    with redirect_design("--no-redirect") as (app, _):
        assert app.get("/pulp/content/lazy/a.bin").status == 404
    assert scenario.remote.count("/lazy/a.bin") == 0


def test_merged_metrics_sit_beside_the_content_prefix(scenario, inprocess_client):
    """The service's counters, beside the content prefix (test_metrics_functional: one
    scrape of `serve --workers N` counts every worker)."""
    client = inprocess_client
    base = scenario.publish("lazy", FILES, "on_demand")
    client.get(base + "a.bin")

    def metrics() -> dict[str, float]:
        return parse(client.get("/metrics").body.decode())

    # A response is counted once finished; a lazy one finishes after its save (fsync'ed),
    # which the /metrics requests made meanwhile may overtake.
    assert eventually(lambda: metrics().get("sent_bytes", 0) >= FILES[0].size)
    values = metrics()
    assert values["upstream_requests"] == 1
    assert values["sent_bytes"] >= FILES[0].size
