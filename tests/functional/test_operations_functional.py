"""Running it for real: the access log, the settings file, a graceful shutdown."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import threading
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.bench import CLI, free_port, wait_listening
from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.config import CONFIG_KEYS
from pulp_content.service.storage import open_storage
from tests.functional.conftest import Client, ServiceProcess, ServiceServer, running_service
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

FILE = FileSpec("f.bin", 2 * 1024 * 1024, 91)


def access_lines(caplog) -> list[dict]:
    return [json.loads(r.getMessage()) for r in caplog.records if r.name == "pulp_content.access"]


def test_json_access_log_says_where_each_answer_came_from(scenario, db, caplog):
    caplog.set_level(logging.INFO, logger="pulp_content.access")
    scenario.publish("eager", [FileSpec("s.bin", 100, 92)], "immediate")
    base = scenario.publish("lazy", [FILE], "on_demand")
    scenario.remote.set_fault("lazy", Fault("bandwidth", bytes_per_second=4 * 1024 * 1024))
    server = ServiceServer(replace(db, log_format="json"))
    with Background(server):
        client = Client(server)
        client.get("/pulp/content/eager/s.bin")
        threads = [threading.Thread(target=client.get, args=(base + "f.bin",)) for _ in range(2)]
        threads[0].start()
        # The second client arrives while the first one's download runs.
        assert eventually(lambda: scenario.remote.count("/lazy/f.bin") == 1)
        threads[1].start()
        for thread in threads:
            thread.join()
        client.get("/pulp/content/nowhere")
        assert eventually(lambda: len(access_lines(caplog)) >= 4)
    lines = access_lines(caplog)
    by_path = {}
    for line in lines:
        by_path.setdefault(line["path"], []).append(line)
    assert by_path["/pulp/content/eager/s.bin"][0]["served_from"] == "storage"
    lazy = sorted(line["served_from"] for line in by_path[base + "f.bin"])
    assert lazy == ["shared download", "upstream"]
    assert {line["status"] for line in by_path[base + "f.bin"]} == {200}
    assert FILE.size < by_path[base + "f.bin"][0]["bytes_sent"] < FILE.size + 1024
    assert by_path["/pulp/content/nowhere"][0]["status"] == 404
    assert set(lines[0]) == {
        "remote",
        "time",
        "method",
        "path",
        "protocol",
        "status",
        "bytes_sent",
        "referer",
        "user_agent",
        "duration_ms",
        "served_from",
    }


def test_settings_file_keys_mirror_the_environment(tmp_path):
    home = tmp_path / "home"
    config = tmp_path / "pulp-content.toml"
    config.write_text(f'home = "{home}"\nlog_format = "json"\nfailure_cooldown = 60\n')
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    done = run_command("--config", str(config), "migrate", env=env)
    assert done.returncode == 0, done.stderr
    assert (home / "db.sqlite3").exists()
    done = run_command("--config", str(config), "remote", "list", "--json", env=env)
    assert done.returncode == 0 and json.loads(done.stdout) == [], done.stderr
    # The environment wins over the file.
    other = tmp_path / "other"
    done = run_command(
        "--config", str(config), "migrate", env={**env, "PULP_CONTENT_HOME": str(other)}
    )
    assert done.returncode == 0 and (other / "db.sqlite3").exists()
    config.write_text('homedir = "/x"\n')
    bad = run_command("--config", str(config), "remote", "list", env=env)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        f"Error: unknown keys in {config}: homedir (known: {', '.join(CONFIG_KEYS)})"
    ]


def test_sigterm_lets_an_in_flight_download_finish_and_leaves_no_partial(scenario):
    base = scenario.publish("lazy", [FILE], "on_demand")
    scenario.remote.set_fault("lazy", Fault("bandwidth", bytes_per_second=2 * 1024 * 1024))
    port = free_port()
    process = subprocess.Popen(
        [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
        env=dict(os.environ),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_listening(port, process)
    results: list[bytes | Exception] = []

    def fetch() -> None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{base}f.bin", timeout=60) as r:
                results.append(r.read())
        except Exception as exc:
            results.append(exc)

    client = threading.Thread(target=fetch)
    client.start()
    assert eventually(lambda: scenario.remote.count("/lazy/f.bin") == 1)
    storage = open_storage(scenario.settings)
    # Under way: bytes in the partial file, the download not finished.
    assert eventually(lambda: any(p.exists() and p.stat().st_size for p in storage.partials()))
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 0
    client.join(timeout=60)
    assert storage.partials() == []
    assert list(Path(storage.tmp).glob("*.lock")) == []
    from pulp_content.service.models import ContentArtifact

    saved = ContentArtifact.objects.get(relative_path="f.bin").artifact
    assert saved is not None, results  # finished within the grace period, and saved whole
    assert storage.path_of(saved.file).read_bytes() == FILE.content()


def test_health_is_503_when_the_database_goes_away(tmp_path):
    """A service on a PostgreSQL database that is then dropped: /health says so."""
    from tests.conftest import drop_postgres, throwaway_postgres

    with throwaway_postgres("pulp_content_health") as url:
        env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_DATABASE_URL": url}
        assert run_command("migrate", env=env).returncode == 0
        port = free_port()
        process = subprocess.Popen(
            [*CLI, "serve", "--bind", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_listening(port, process)
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30) as r:
                assert r.status == 200
            drop_postgres(url)
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=30)
                raise AssertionError("expected 503")
            except urllib.error.HTTPError as exc:
                assert exc.code == 503
                assert json.loads(exc.read())["database"] == "down"
                exc.close()
            assert process.poll() is None  # still up, still answering
        finally:
            process.terminate()
            process.wait(timeout=30)


def test_bytes_sent_with_sendfile_are_counted(scenario):
    """A stored 307,200-byte file goes out with sendfile: the access log line and
    /metrics count its body, not only its headers."""
    stored = FileSpec("s.bin", 307_200, 93)
    base = scenario.publish("counted", [stored], "immediate")
    settings = scenario.settings
    with ServiceProcess(settings, workers=1, options=("--log-format", "json")) as served:
        before = metrics_of(served.port).get("sent_bytes", 0)
        with urllib.request.urlopen(f"http://127.0.0.1:{served.port}{base}s.bin") as r:
            assert r.read() == stored.content()
        assert eventually(lambda: f'"path": "{base}s.bin"' in served.output())
        after = metrics_of(served.port)["sent_bytes"]
        line = next(
            json.loads(text[text.index("{") :])
            for text in served.output().splitlines()
            if f'"path": "{base}s.bin"' in text
        )
    assert line["served_from"] == "storage"
    # Headers included, like nginx's $bytes_sent: the body and a few hundred bytes more.
    assert stored.size < line["bytes_sent"] < stored.size + 1024
    # /metrics counted that request, and no other (its own answers and probes apart).
    assert after - before == line["bytes_sent"]


def metrics_of(port: int) -> dict[str, float]:
    from pulp_content.service.metrics import parse

    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        return parse(r.read().decode())


def test_start_up_sweeps_the_partial_files_a_crash_left(db):
    storage = open_storage(db)
    leftover = storage.new_partial("f" * 64)
    leftover.write_bytes(b"half a download")
    with running_service(db) as started:
        assert started.get("/pulp/content/").status == 200
        assert storage.partials() == []
