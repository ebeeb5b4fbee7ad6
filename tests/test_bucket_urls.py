"""service.bucket: the presigned URLs the service reads its own objects through are
signed once per object and reuse period, and forgotten when the bucket refuses one."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from pulp_content.service.bucket import REUSE, Bucket
from pulp_content.service.locks import FileLocks
from pulp_content.service.storage import S3Storage


class SigningClient:
    """Counts signatures; each URL names its number."""

    def __init__(self) -> None:
        self.signed = 0

    async def generate_presigned_url(self, op: str, Params: dict[str, Any], ExpiresIn: int) -> str:
        self.signed += 1
        return f"http://bucket.invalid/{Params['Key']}?sig={self.signed}&expires={ExpiresIn}"


def test_an_objects_url_is_signed_once_per_reuse_period(tmp_path: Path):
    now = [1000.0]
    client = SigningClient()
    storage = S3Storage(tmp_path, "bucket", "p/", FileLocks())
    # No session: signing never reads an object.
    bucket = Bucket(storage, client, "stream", None, clock=lambda: now[0])  # type: ignore[arg-type]

    async def sign(key: str) -> str:
        return await bucket._signed(key)

    first = asyncio.run(sign("p/artifact/aa/bb"))
    assert asyncio.run(sign("p/artifact/aa/bb")) == first and client.signed == 1
    assert asyncio.run(sign("p/artifact/cc/dd")) != first and client.signed == 2
    now[0] += REUSE - 1
    assert asyncio.run(sign("p/artifact/aa/bb")) == first and client.signed == 2
    now[0] += 1
    assert asyncio.run(sign("p/artifact/aa/bb")) != first and client.signed == 3
    assert "expires=300" in first  # valid a minute past its last use here
