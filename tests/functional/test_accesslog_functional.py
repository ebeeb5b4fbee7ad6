"""Log lines carry what clients send, escaped: a request cannot write a line of its own
into the service's log (`serve` in a fresh process, requests on a raw socket)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI
from pulp_content.fixtures.remote import FileSpec
from tests.functional.conftest import ServiceProcess
from tests.helpers import curl, eventually

pytestmark = pytest.mark.functional

# What an attacker would like a log reader to believe: a line of its own.
FORGED = '203.0.113.66 "GET /pulp/content/forged" 200 0 0.1ms storage'
# Each a request target whose decoded path starts a new line (for `str.splitlines`, as
# log readers and terminals split) followed by the forged one.
BREAKS = {
    "LF": "%0a",
    "CRLF": "%0d%0a",
    "CR": "%0d",
    "NEL (C1)": "%c2%85",
    "LINE SEPARATOR": "%e2%80%a8",
}


def raw_get(port: int, target: str, headers: dict[str, str] | None = None) -> bytes:
    """A GET with exactly this request target (and headers), as a client can send it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        more = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{more}Connection: close\r\n\r\n"
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def forged_target(prefix: str, linebreak: str) -> str:
    return prefix + linebreak + FORGED.replace(" ", "%20").replace('"', "%22")


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


# nginx's `combined` line: address, two dashes, [time with zone], "request line", ...
ACCESS_LINE = re.compile(r'^\S+ - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "')


def access_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if ACCESS_LINE.match(line)]


@pytest.fixture
def guarded(scenario):
    """An open distribution `open/` and one behind a header guard, `g/`."""
    scenario.publish("open", [FileSpec("a.bin", 100, 51)], "immediate", base_path="open")
    scenario.publish("g", [FileSpec("b.bin", 100, 52)], "immediate", base_path="g")
    scenario.cli("guard", "create", "token", "--kind", "header", "--header", "X-T", "--value", "v")
    scenario.cli("distribution", "update", "g", "--guard", "token")
    return scenario


def test_a_request_cannot_forge_an_access_log_line(guarded):
    targets = [
        forged_target(prefix, linebreak)
        for prefix in ("/pulp/content/open/a.bin", "/pulp/content/g/b.bin")
        for linebreak in BREAKS.values()
    ]
    with ServiceProcess(guarded.settings, workers=1) as service:
        for target in targets:
            assert raw_get(service.port, target).startswith(b"HTTP/1.1 40")
        assert eventually(lambda: len(lines_with(service.output(), "forged")) >= len(targets))
        output = service.output()
    forged = lines_with(output, "forged")
    # Every line that mentions the forged text is the service's own access log line (or
    # its refusal line), with the line break escaped inside it.
    access = [line for line in forged if ACCESS_LINE.match(line)]
    assert all(line in access or " refused " in line for line in forged), forged
    assert not [line for line in output.splitlines() if line.startswith("203.0.113.66")]
    assert len(access) == len(targets)
    for escaped in (r"\x0a", r"\x0d\x0a", r"\x0d", r"\x85", r"\u2028"):
        assert any(escaped + "203.0.113.66" in line for line in access), escaped
    assert all(r"\x22GET /pulp/content/forged\x22" in line for line in access)


def test_a_refused_request_cannot_forge_a_line(guarded):
    """A guard's refusal is logged with the path: the path's control characters that
    reach it (DEL, C1, separators: the resolver refuses C0 ones first) are escaped."""
    with ServiceProcess(guarded.settings, workers=1) as service:
        for name in ("NEL (C1)", "LINE SEPARATOR"):
            target = forged_target("/pulp/content/g/b.bin", BREAKS[name])
            assert raw_get(service.port, target).startswith(b"HTTP/1.1 403")
        target = "/pulp/content/g/x%7f%1b%5b2Jforged"  # DEL, and an escape sequence
        assert raw_get(service.port, target).startswith(b"HTTP/1.1 404")
        assert eventually(lambda: len(lines_with(service.output(), "refused GET")) >= 2)
        output = service.output()
    refusals = lines_with(output, "refused GET")
    assert len(refusals) == 2
    assert all(line.endswith(": missing header X-T") for line in refusals), refusals
    assert not [line for line in output.splitlines() if line.startswith("203.0.113.66")]
    assert "\x1b" not in output and "\x7f" not in output
    assert any(r"x\x7f\x1b[2Jforged" in line for line in access_lines(output))


def test_json_access_log_keeps_each_request_on_one_line(guarded, monkeypatch):
    monkeypatch.setenv("PULP_CONTENT_LOG_FORMAT", "json")
    targets = [forged_target("/pulp/content/open/a.bin", b) for b in BREAKS.values()]
    with ServiceProcess(guarded.settings, workers=1) as service:
        for target in targets:
            raw_get(service.port, target)
        assert eventually(lambda: len(lines_with(service.output(), "forged")) >= len(targets))
        output = service.output()
    forged = lines_with(output, "forged")
    assert len(forged) == len(targets)
    # JSON Lines: each line is one JSON object and nothing else.
    documents = [json.loads(line) for line in forged]
    assert sorted(doc["path"] for doc in documents) == sorted(
        "/pulp/content/open/a.bin" + decoded + FORGED
        for decoded in ("\n", "\r\n", "\r", "\x85", "\u2028")
    )


def logged(service: ServiceProcess, path: str, count: int = 1) -> list[str]:
    """The access lines of `path`, once `count` of them are there."""

    def lines() -> list[str]:
        return [line for line in access_lines(service.output()) if f" {path} " in line]

    assert eventually(lambda: len(lines()) >= count), service.output()
    return lines()


def test_the_line_is_nginx_combined_with_duration_and_source(guarded):
    """Address, time with zone, request line with version, status, bytes, Referer and
    User-Agent (escaped, quotes too), duration, served-from; never the query string."""
    headers = {"Referer": 'http://r.test/"q"', "User-Agent": 'agent "x"'}
    with ServiceProcess(guarded.settings, workers=1) as service:
        for _ in range(2):  # from storage, then from memory (a small file)
            assert b" 200 " in raw_get(service.port, "/pulp/content/open/a.bin?sig=s3cret", headers)
        first, second = logged(service, "/pulp/content/open/a.bin", 2)
        output = service.output()
    assert re.fullmatch(
        r"127\.0\.0\.1 - - \[\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "
        r'"GET /pulp/content/open/a\.bin HTTP/1\.1" 200 \d+ '
        r'"http://r\.test/\\x22q\\x22" "agent \\x22x\\x22" \d+\.\dms storage',
        first,
    ), first
    assert second.endswith("ms memory")
    assert "s3cret" not in output


def test_json_lines_are_json_and_nothing_else(guarded, monkeypatch):
    """`--log-format json`: every access line is one JSON object, with no prefix."""
    monkeypatch.setenv("PULP_CONTENT_LOG_FORMAT", "json")
    with ServiceProcess(guarded.settings, workers=2) as service:
        raw_get(service.port, "/pulp/content/open/a.bin?sig=s3cret", {"User-Agent": "ua"})
        raw_get(service.port, "/pulp/content/open/missing")
        assert eventually(lambda: service.output().count('"path": "/pulp/content/') >= 2)
        output = service.output()
    lines = [line for line in output.splitlines() if '"path": "/pulp/content/' in line]
    documents = sorted((json.loads(line) for line in lines), key=lambda doc: doc["status"])
    assert [doc["status"] for doc in documents] == [200, 404]
    first = documents[0]
    assert first["remote"] == "127.0.0.1" and first["protocol"] == "HTTP/1.1"
    assert first["user_agent"] == "ua" and first["referer"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", first["time"])
    assert "pulp_content.access" not in output and "s3cret" not in output
    assert not access_lines(output)  # no plain line beside them


def test_a_forwarded_address_counts_only_from_a_trusted_proxy(guarded, monkeypatch):
    """A client that sends its own X-Forwarded-For (or Forwarded) from a peer that is
    not a trusted proxy is logged with its own address."""
    monkeypatch.setenv("PULP_CONTENT_TRUSTED_PROXIES", "10.0.0.0/8")
    spoofed = {"X-Forwarded-For": "203.0.113.9", "Forwarded": "for=203.0.113.8"}
    with ServiceProcess(guarded.settings, workers=1) as service:
        raw_get(service.port, "/pulp/content/open/a.bin", spoofed)
        [line] = logged(service, "/pulp/content/open/a.bin")
    assert line.startswith("127.0.0.1 - - [")


@pytest.mark.parametrize(
    ("headers", "client"),
    [
        # The right-most address that is not a trusted proxy (nginx's real_ip_recursive):
        # what the client itself wrote further left proves nothing.
        ({"X-Forwarded-For": "198.51.100.1, 203.0.113.9, 127.0.0.5"}, "203.0.113.9"),
        ({"Forwarded": 'for=198.51.100.1, for="[2001:db8::1]:4711"'}, "2001:db8::1"),
        ({"X-Forwarded-For": "unknown"}, "127.0.0.1"),
    ],
)
def test_behind_a_trusted_proxy_the_client_is_logged(guarded, headers, client):
    with ServiceProcess(guarded.settings, workers=1) as service:
        raw_get(service.port, "/pulp/content/open/a.bin", headers)
        [line] = logged(service, "/pulp/content/open/a.bin")
    assert line.startswith(f"{client} - - [")


def test_a_unix_socket_peer_is_the_front_web_server(guarded, tmp_path):
    """Who may connect to a unix socket is its file mode's decision: what connects is the
    proxy in front, and its X-Forwarded-For names the client."""
    socket_dir = Path(tempfile.mkdtemp(prefix="pc-", dir="/tmp"))
    path = socket_dir / "s"
    log = tmp_path / "out.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [*CLI, "serve", "--bind", f"unix:{path}"], env=dict(os.environ), stdout=out, stderr=out
        )
    try:
        assert eventually(lambda: path.exists() or process.poll() is not None, timeout=60)
        url = "http://localhost/pulp/content/open/a.bin"
        forwarded = ("-H", "X-Forwarded-For: 203.0.113.9")
        assert curl(url, "--unix-socket", str(path), *forwarded).status == 200
        assert curl(url, "--unix-socket", str(path)).status == 200
        assert eventually(lambda: len(access_lines(log.read_text())) >= 2)
    finally:
        process.terminate()
        process.wait(timeout=30)
        shutil.rmtree(socket_dir, ignore_errors=True)
    first, second = access_lines(log.read_text())
    assert first.startswith("203.0.113.9 - - [") and second.startswith("- - - [")


@pytest.mark.parametrize("level", ["warning", "error"])
def test_log_level_above_info_leaves_the_access_log_out(guarded, level):
    with ServiceProcess(guarded.settings, workers=1, options=("--log-level", level)) as service:
        assert b" 200 " in raw_get(service.port, "/pulp/content/open/a.bin")
        assert service.stop(timeout=30) == 0
        output = service.output()
    assert not access_lines(output) and "GET /pulp/content/open/a.bin" not in output


def test_an_unknown_log_level_is_one_line(tmp_path):
    env = {**os.environ, "PULP_CONTENT_HOME": str(tmp_path), "PULP_CONTENT_LOG_LEVEL": "loud"}
    done = subprocess.run([*CLI, "serve"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: PULP_CONTENT_LOG_LEVEL must be one of debug, info, warning, error, not 'loud'"
    ]
