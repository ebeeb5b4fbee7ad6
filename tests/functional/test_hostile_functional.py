"""Hostile requests: each gets a 4xx (or is ignored as the RFC allows), never a 5xx,
and the service keeps answering."""

from __future__ import annotations

import socket

import pytest

from pulp_content.fixtures.remote import FileSpec

pytestmark = pytest.mark.functional

FILE = FileSpec("f.bin", 4000, 71)


def raw(port: int, request: bytes) -> bytes:
    """Send bytes as they are; return the status line (or b'' if the peer just closed)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        try:
            answer = sock.recv(65536)
        except ConnectionResetError:
            return b""
    return answer.split(b"\r\n", 1)[0]


def status_of(line: bytes) -> int:
    return int(line.split()[1]) if line else 0


@pytest.fixture
def served(scenario, client):
    base = scenario.publish("h", [FILE], "immediate")
    return client, base


HOSTILE = {
    "overlong path": b"GET /pulp/content/h/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "overlong header": b"GET /pulp/content/h/f.bin HTTP/1.1\r\nHost: x\r\nX-Big: "
    + b"b" * 20_000
    + b"\r\n\r\n",
    "absurd If-None-Match": b"GET /pulp/content/h/f.bin HTTP/1.1\r\nHost: x\r\nIf-None-Match: "
    + b'"x",' * 5_000
    + b"\r\n\r\n",
    "CR in the path": b"GET /pulp/content/h/f.bin\rX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "LF in the path": b"GET /pulp/content/h/f\nX-Injected: 1 HTTP/1.1\r\nHost: x\r\n\r\n",
    "encoded CRLF in the path": b"GET /pulp/content/h/f.bin%0d%0aX-Injected:%201 HTTP/1.1\r\n"
    b"Host: x\r\n\r\n",
    "encoded traversal": b"GET /pulp/content/h/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n"
    b"Host: x\r\n\r\n",
    "NUL in the path": b"GET /pulp/content/h/f%00.bin HTTP/1.1\r\nHost: x\r\n\r\n",
    "garbage request line": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,
    "huge Content-Length on GET": b"GET /pulp/content/h/f.bin HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 99999999999999999999\r\n\r\n",
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_request_gets_a_4xx_and_the_service_stays_up(served, name):
    client, base = served
    line = raw(client.server.port, HOSTILE[name])
    assert line == b"" or 400 <= status_of(line) < 500, line
    assert b"X-Injected" not in line
    again = client.get(base + "f.bin")
    assert again.status == 200 and again.body == FILE.content()


@pytest.mark.parametrize(
    "value",
    [
        "bytes=abc",
        "bytes=5-1",
        "bytes=" + ",".join(f"{i}-{i}" for i in range(500)),
        "bytes=-",
        "lines=0-1",
        "bytes=99999999999999999999999-",
    ],
)
def test_malformed_or_many_ranges_are_ignored_not_served_wrong(served, value):
    client, base = served
    response = client.get(base + "f.bin", {"Range": value})
    assert response.status == 200 and response.body == FILE.content()


def test_health_answers_beside_the_content_prefix(served):
    client, _ = served
    response = client.get("/health")
    assert response.status == 200
    assert b'"database": "ok"' in response.body
