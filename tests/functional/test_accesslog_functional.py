"""Log lines carry what clients send, escaped: a request cannot write a line of its own
into the service's log (`serve` in a fresh process, requests on a raw socket)."""

from __future__ import annotations

import json
import re
import socket

import pytest

from pulp_content.fixtures.remote import FileSpec
from tests.functional.conftest import ServiceProcess
from tests.helpers import eventually

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


def raw_get(port: int, target: str) -> bytes:
    """A GET with exactly this request target, as a client can send it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        sock.sendall(request.encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def forged_target(prefix: str, linebreak: str) -> str:
    return prefix + linebreak + FORGED.replace(" ", "%20").replace('"', "%22")


def lines_with(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


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
    assert all(" pulp_content.access: " in line or " refused " in line for line in forged), forged
    assert not [line for line in output.splitlines() if line.startswith("203.0.113.66")]
    access = [line for line in forged if " pulp_content.access: " in line]
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
    assert any(r"x\x7f\x1b[2Jforged" in line for line in lines_with(output, "access"))


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
    documents = [json.loads(re.sub(r"^.*? pulp_content\.access: ", "", line)) for line in forged]
    assert sorted(doc["path"] for doc in documents) == sorted(
        "/pulp/content/open/a.bin" + decoded + FORGED
        for decoded in ("\n", "\r\n", "\r", "\x85", "\u2028")
    )
