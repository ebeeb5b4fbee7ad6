from __future__ import annotations

import base64
import hashlib

import pytest

from pulp_content.service.headers import content_type, repr_digest


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("repodata/primary.xml.gz", "application/gzip"),
        ("a/b.tar.xz", "application/x-xz"),
        ("x.rpm", "application/x-rpm"),
        ("index.html", "text/html"),
        ("PULP_MANIFEST", "application/octet-stream"),
        ("disk.iso", "application/x-iso9660-image"),
        ("repomd.xml", "text/xml"),
    ],
)
def test_content_type_by_extension(path: str, expected: str) -> None:
    assert content_type(path) == expected


def test_repr_digest_is_rfc9530_base64_of_the_raw_digest() -> None:
    digest = hashlib.sha256(b"hello")
    expected = "sha-256=:" + base64.b64encode(digest.digest()).decode() + ":"
    assert repr_digest(digest.hexdigest()) == expected
