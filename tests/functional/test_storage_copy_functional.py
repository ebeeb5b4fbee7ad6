"""`pulp-content storage copy --to URL` as a user runs it (fresh processes): a directory to
a bucket and back to a new directory, then served from there with the same bytes; a
second run copies nothing and an interrupted one finishes; a source file with the wrong
bytes, or none, is reported and nothing of it reaches the destination; a bad --to, an
unwritable directory and a bucket that does not answer are one line each."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import signal
import subprocess
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pulp_content.fixtures.bench import CLI, free_port
from pulp_content.fixtures.remote import FileSpec
from pulp_content.service.storage import artifact_name
from tests.conftest import Scenario
from tests.functional.conftest import running_service
from tests.helpers import eventually, run_command

pytestmark = pytest.mark.functional

SMALL = FileSpec("notes.txt", 5_000, 71)
MIDDLE = FileSpec("dir/disk.iso", 300_000, 72)
# Over one upload part (8 MiB): a multipart upload, completed only once verified.
LARGE = FileSpec("large.img", 9 * 1024 * 1024 + 3, 73)
FILES = [SMALL, MIDDLE, LARGE]


def name_of(spec: FileSpec) -> str:
    return artifact_name(hashlib.sha256(spec.content()).hexdigest())


@pytest.fixture
def aws(s3_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a CLI command that reaches the test bucket."""
    for name, value in s3_server.environ().items():
        monkeypatch.setenv(name, value)
    return dict(os.environ)


@pytest.fixture
def bucket_url(s3_server) -> str:
    """A prefix of the test bucket for this test alone."""
    return f"s3://{s3_server.bucket}/copy-{uuid.uuid4().hex[:12]}"


def copy(env: dict[str, str], url: str, *options: str):  # type: ignore[no-untyped-def]
    return run_command("storage", "copy", "--to", url, *options, env=env)


def objects(s3_server, url: str) -> dict[str, bytes]:  # type: ignore[no-untyped-def]
    """The artifact objects under the prefix of `url`, by storage name, with their bytes."""
    prefix = url.split("/", 3)[3] + "/"
    client = s3_server.client()
    found = {}
    for key in s3_server.object_keys(prefix):
        answer = client.get_object(Bucket=s3_server.bucket, Key=key)
        found[key.removeprefix(prefix)] = answer["Body"].read()
    return found


def files_under(root: Path) -> dict[str, bytes]:
    top = root / "artifact"
    return {
        path.relative_to(root).as_posix(): path.read_bytes()
        for path in top.rglob("*")
        if path.is_file()
    }


def test_there_and_back_then_served_from_the_copy(
    scenario: Scenario, aws, bucket_url, s3_server, tmp_path, monkeypatch
):
    base = scenario.publish("copied", FILES, "immediate")
    # The files and the publication's PULP_MANIFEST: every artifact the rows name.
    expected = files_under(scenario.settings.storage_root)
    assert len(expected) == 4 and all(name_of(spec) in expected for spec in FILES)
    there = copy(aws, bucket_url)
    assert there.returncode == 0, there.stderr
    total = sum(len(data) for data in expected.values())
    assert f"4 copied ({total} bytes), 0 already there, 0 problems" in there.stderr
    assert f"now set PULP_CONTENT_STORAGE_URL={bucket_url}" in there.stderr
    assert objects(s3_server, bucket_url) == expected

    back = tmp_path / "back"
    from_bucket = dict(aws, PULP_CONTENT_STORAGE_URL=bucket_url)
    home = copy(from_bucket, back.as_uri())
    assert home.returncode == 0, home.stderr
    assert "4 copied" in home.stderr and home.stdout == ""
    assert files_under(back) == expected
    assert list((back / "tmp").iterdir()) == []  # no partial file left

    # The original storage goes: what is served now can only come from the copy.
    shutil.rmtree(scenario.settings.storage_root)
    monkeypatch.setenv("PULP_CONTENT_STORAGE_URL", back.as_uri())
    settings = dataclasses.replace(scenario.settings, storage_url=back.as_uri())
    with running_service(settings) as client:
        for spec in FILES:
            reply = client.get(base + spec.relative_path)
            assert reply.status == 200 and reply.body == spec.content()
    for spec in FILES:
        assert scenario.remote.count(f"/copied/{spec.relative_path}") == 1  # the sync's


def test_a_second_run_copies_nothing_and_a_cut_short_one_finishes(
    scenario: Scenario, aws, bucket_url, s3_server
):
    scenario.publish("resumed", [SMALL, MIDDLE], "immediate")
    first = copy(aws, bucket_url)
    assert first.returncode == 0 and "3 copied" in first.stderr, first.stderr
    again = copy(aws, bucket_url)
    assert again.returncode == 0, again.stderr
    assert "0 copied (0 bytes), 3 already there, 0 problems" in again.stderr

    # As if the first run had been interrupted before the second artifact.
    prefix = bucket_url.split("/", 3)[3] + "/"
    client = s3_server.client()
    client.delete_object(Bucket=s3_server.bucket, Key=prefix + name_of(MIDDLE))
    rest = copy(aws, bucket_url, "--json")
    assert rest.returncode == 0, rest.stderr
    summary = json.loads(rest.stdout)
    assert (summary["copied"], summary["copied_bytes"], summary["present"]) == (1, 300_000, 2)
    assert summary["problems"] == []

    # A right-sized object with the wrong bytes: only --verify-existing sees it.
    wrong = bytes(300_000)
    client.put_object(Bucket=s3_server.bucket, Key=prefix + name_of(MIDDLE), Body=wrong)
    assert "0 copied" in copy(aws, bucket_url).stderr
    checked = copy(aws, bucket_url, "--verify-existing")
    assert checked.returncode == 0, checked.stderr
    assert "1 copied (300000 bytes), 1 of them replacing wrong bytes" in checked.stderr
    assert "2 already there, 2 verified" in checked.stderr
    assert objects(s3_server, bucket_url)[name_of(MIDDLE)] == MIDDLE.content()


@pytest.mark.parametrize("to", ["directory", "bucket"])
def test_wrong_or_missing_source_files_are_reported_and_not_copied(
    scenario: Scenario, aws, bucket_url, s3_server, tmp_path, to
):
    scenario.publish("damaged", FILES, "immediate")
    root = scenario.settings.storage_root
    (manifest,) = set(files_under(root)) - {name_of(spec) for spec in FILES}
    for spec in (SMALL, LARGE):  # the same size, other bytes: one PUT, then a multipart
        (root / name_of(spec)).write_bytes(bytes(len(spec.content())))
    (root / name_of(MIDDLE)).unlink()
    url = bucket_url if to == "bucket" else (tmp_path / "copy").as_uri()
    done = copy(aws, url)
    assert done.returncode == 1, done.stderr
    zero = {spec: hashlib.sha256(bytes(len(spec.content()))).hexdigest() for spec in FILES}
    assert sorted(done.stdout.splitlines()) == sorted(
        [
            f"wrong bytes: {name_of(SMALL)} (the bytes hash to {zero[SMALL]})",
            f"wrong bytes: {name_of(LARGE)} (the bytes hash to {zero[LARGE]})",
            f"missing at the source: {name_of(MIDDLE)}",
        ]
    )
    assert "1 copied" in done.stderr and "0 already there, 3 problems" in done.stderr
    assert "Traceback" not in done.stderr
    if to == "bucket":
        assert list(objects(s3_server, bucket_url)) == [manifest]
        listed = s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket)
        assert listed.get("Uploads", []) == []  # the multipart upload was aborted
    else:
        assert list(files_under(tmp_path / "copy")) == [manifest]
        assert list((tmp_path / "copy" / "tmp").iterdir()) == []


def test_bad_destinations_are_one_line(scenario: Scenario, tmp_path):
    env = dict(os.environ)
    scenario.publish("few", [SMALL], "immediate")
    here = scenario.settings.storage_root.as_uri()
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    free = free_port()
    nobody = dict(
        env,
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{free}",
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="y",
        AWS_DEFAULT_REGION="us-east-1",
    )
    cases = [
        (env, "http://example.com/x", "--to must be file:///path or s3://BUCKET[/PREFIX]"),
        (env, "file://host/x", "--to must be file:///absolute/path"),
        (env, "s3://No_Such", "--to must be s3://BUCKET[/PREFIX]"),
        (env, here, "is the configured storage itself"),
        (env, here + "/", "is the configured storage itself"),
        (env, (afile / "sub").as_uri(), f"cannot write to {afile / 'sub'}"),
        (nobody, "s3://nobody-home/x", "bucket nobody-home: HEAD failed: EndpointConnectionError"),
    ]
    for case_env, url, message in cases:
        done = copy(case_env, url)
        assert done.returncode == 1, (url, done.stderr)
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: "), (url, done.stderr)
        assert message in lines[0], (url, lines[0])


@pytest.mark.parametrize("to", ["directory", "bucket"])
def test_ctrl_c_leaves_nothing_half_copied_and_the_next_run_finishes(
    scenario: Scenario, aws, bucket_url, s3_server, tmp_path, to
):
    """The large file's source is a pipe that gives a part and a bit, then nothing: the
    copy is caught half-way through it (a partial file, or a multipart upload begun)."""
    scenario.publish("cut", FILES, "immediate")
    source = scenario.settings.storage_root / name_of(LARGE)
    source.unlink()
    os.mkfifo(source)
    url = bucket_url if to == "bucket" else (tmp_path / "copy").as_uri()
    command = [*CLI, "storage", "copy", "--to", url]
    env = dict(aws, PYTHONFAULTHANDLER="1")  # SIGABRT prints where it is stuck
    running = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    done = threading.Event()
    with ThreadPoolExecutor(1) as pool:
        part_and_a_bit = LARGE.content()[: 8 * 1024 * 1024 + 1000]
        feeding = pool.submit(_feed, source, part_and_a_bit, done)
        try:
            assert eventually(lambda: _half_copied(s3_server, url, to), timeout=60)
            running.send_signal(signal.SIGINT)
            err = _stopped(running)
        finally:
            running.kill()
            done.set()
        feeding.result(timeout=10)
    assert running.returncode == 130, err
    (line,) = err.decode().splitlines()
    assert line.startswith("interrupted: ") and line.endswith("run it again to copy the rest")
    before = int(line.split()[1])
    assert not _half_copied(s3_server, url, to)
    if to == "directory":
        assert list((tmp_path / "copy" / "tmp").iterdir()) == []
    there = objects(s3_server, bucket_url) if to == "bucket" else files_under(tmp_path / "copy")
    assert name_of(LARGE) not in there and len(there) == before

    source.unlink()
    source.write_bytes(LARGE.content())
    rest = copy(aws, url)
    assert rest.returncode == 0, rest.stderr
    assert f"{4 - before} copied" in rest.stderr and f"{before} already there" in rest.stderr
    there = objects(s3_server, bucket_url) if to == "bucket" else files_under(tmp_path / "copy")
    assert there == files_under(scenario.settings.storage_root)


def _stopped(running: subprocess.Popen[bytes]) -> bytes:
    """Its stderr once it has exited; fails with its threads' stacks if it does not."""
    try:
        return running.communicate(timeout=60)[1]
    except subprocess.TimeoutExpired:
        running.send_signal(signal.SIGABRT)
        stuck = running.communicate()[1].decode(errors="replace")
        pytest.fail(f"storage copy did not stop on SIGINT:\n{stuck}")


def _feed(fifo: Path, data: bytes, done: threading.Event) -> None:
    """Write `data` into the pipe (waiting for the copy to open it); keep it open, giving
    nothing more, until `done` (a reader that died makes the close fail: fine)."""
    with contextlib.suppress(BrokenPipeError), open(fifo, "wb", buffering=0) as pipe:
        pipe.write(data)
        done.wait(120)


def _half_copied(s3_server, url: str, to: str) -> bool:  # type: ignore[no-untyped-def]
    """Half-way through the large file: a multipart upload under way in the bucket, or
    a partial file of a part's size in the directory."""
    if to == "bucket":
        prefix = url.split("/", 3)[3] + "/"
        listed = s3_server.client().list_multipart_uploads(Bucket=s3_server.bucket, Prefix=prefix)
        return bool(listed.get("Uploads"))
    tmp = Path(url.removeprefix("file://")) / "tmp"
    for partial in tmp.iterdir() if tmp.is_dir() else []:
        with contextlib.suppress(FileNotFoundError):  # a small file's, placed meanwhile
            if partial.stat().st_size >= 8 * 1024 * 1024:
                return True
    return False
