"""Masking credentials and escaping log fields (pure functions, no Django)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pulp_content.service.errors import UpstreamError
from pulp_content.service.redact import escape, mask_url, mask_urls


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://u:pw@h:81/a?b#c", "http://u:***@h:81/a?b#c"),
        ("https://token@h/", "https://***@h/"),
        ("http://u:p@ss:w@h/", "http://u:***@h/"),  # the last @ ends the userinfo
        ("http://u:@h/", "http://u:***@h/"),
        ("http://h/a@b", "http://h/a@b"),  # an @ in the path is no credential
        ("http://h/", "http://h/"),
    ],
)
def test_mask_url(url, shown):
    assert mask_url(url) == shown
    assert mask_urls(f"failed: {url} and more") == f"failed: {shown} and more"


def test_upstream_errors_never_carry_credentials():
    exc = UpstreamError("http://u:s3cret@h/f", "cannot reach http://v:other@p:3128 today")
    assert "s3cret" not in str(exc) and "other" not in str(exc)
    assert str(exc) == "upstream http://u:***@h/f: cannot reach http://v:***@p:3128 today"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        ("/plain/path.iso", "/plain/path.iso"),
        ("/a\nb", r"/a\x0ab"),
        ("/a\r\n\tb", r"/a\x0d\x0a\x09b"),
        ("/a\x00\x1b[2J\x7f", r"/a\x00\x1b[2J\x7f"),
        ("/a\x85b\u2028c\u2029d", r"/a\x85b\u2028c\u2029d"),
        ("/a\u202eb", r"/a\u202eb"),  # a bidi override would reorder what a reader sees
        ('/say "hi"', r"/say \x22hi\x22"),
        ("/café/中文", "/café/中文"),  # printable text stays readable
    ],
)
def test_escape_keeps_a_field_on_its_line(text, escaped):
    assert escape(text) == escaped
    assert len(escape(text).splitlines()) <= 1


def test_redact_needs_no_django():
    code = "import pulp_content.service.redact, pulp_content.service.errors, sys; "
    code += "assert 'django' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
