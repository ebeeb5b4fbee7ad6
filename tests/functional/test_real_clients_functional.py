"""Real download tools against uncached on_demand content: the bytes must be right."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import subprocess
import sys
import zipfile

import pytest

from pulp_content.fixtures.remote import Fault, FileSpec
from pulp_content.service.storage import artifact_name, open_storage
from tests.helpers import eventually, need_tool

pytestmark = pytest.mark.functional

BIG = FileSpec("images/disk.img", 20 * 1024 * 1024, 51)
SMALL = FileSpec("notes.bin", 300_000, 52)


def run(*args: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr or done.stdout


@pytest.fixture
def lazy(scenario, client):
    base = scenario.publish("real", [BIG, SMALL], "on_demand")
    return scenario, f"http://127.0.0.1:{client.server.port}{base}"


def test_curl_plain_and_range(lazy, tmp_path):
    _, base = lazy
    curl = need_tool("curl")
    run(curl, "-sSf", "-o", str(tmp_path / "whole"), base + SMALL.relative_path)
    assert (tmp_path / "whole").read_bytes() == SMALL.content()
    run(curl, "-sSf", "-r", "1000-1999", "-o", str(tmp_path / "part"), base + BIG.relative_path)
    assert (tmp_path / "part").read_bytes() == BIG.content()[1000:2000]


def test_curl_resumes_an_interrupted_transfer(lazy, tmp_path):
    _, base = lazy
    target = tmp_path / "disk.img"
    target.write_bytes(BIG.content()[: 5 * 1024 * 1024])  # what an interrupted run left
    run(need_tool("curl"), "-sSf", "-C", "-", "-o", str(target), base + BIG.relative_path)
    assert hashlib.sha256(target.read_bytes()).digest() == hashlib.sha256(BIG.content()).digest()


def test_wget_continues_an_interrupted_transfer(lazy, tmp_path):
    _, base = lazy
    target = tmp_path / "disk.img"
    target.write_bytes(BIG.content()[:3_000_000])
    run(need_tool("wget"), "-q", "-c", "-O", str(target), base + BIG.relative_path)
    assert target.read_bytes() == BIG.content()


def test_aria2c_segmented_download(scenario, client, tmp_path):
    """The issue's case: `aria2c -x8 -s8` on an uncached 200 MiB on_demand artifact."""
    huge = FileSpec("images/huge.img", 200 * 1024 * 1024, 53)
    base = scenario.publish("segmented", [huge], "on_demand")
    run(
        need_tool("aria2c"),
        "-q",
        "-x8",
        "-s8",
        "-k1M",
        "--allow-overwrite=true",
        "-d",
        str(tmp_path),
        "-o",
        "huge.img",
        f"http://127.0.0.1:{client.server.port}{base}{huge.relative_path}",
    )
    expected = scenario.remote.repositories["segmented"].digests[huge.relative_path]
    assert file_sha256(tmp_path / "huge.img") == expected
    path = f"/segmented/{huge.relative_path}"
    full = scenario.remote.count(path) - scenario.remote.ranged[path]
    assert full <= 1  # at most one full download, plus the forwarded ranges


def test_aria2c_segments_of_a_corrupt_file_never_add_up_to_it(scenario, client, tmp_path):
    """The upstream sends wrong bytes: `aria2c -x8 -s8` fetches the artifact in ranges,
    forwarded upstream or read from the shared download, and must not end up with every
    byte of it (the one range with the last byte waits for a verification that fails)."""
    bad = FileSpec("images/bad.img", 8 * 1024 * 1024, 54)
    base = scenario.publish("corrupt", [bad], "on_demand")
    scenario.remote.set_fault("corrupt", Fault("wrong_bytes"))
    done = subprocess.run(
        [
            need_tool("aria2c"),
            "-q",
            "-x8",
            "-s8",
            "-k1M",
            "--max-tries=2",
            "--retry-wait=0",
            "--file-allocation=none",  # the file grows to the furthest byte received
            "-d",
            str(tmp_path),
            "-o",
            "bad.img",
            f"http://127.0.0.1:{client.server.port}{base}{bad.relative_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0, "aria2c reports a complete download"
    left = tmp_path / "bad.img"
    assert not left.exists() or left.stat().st_size < bad.size
    from pulp_content.service.models import Artifact

    sha256 = scenario.remote.repositories["corrupt"].digests[bad.relative_path]
    assert not Artifact.objects.filter(sha256=sha256).exists()
    storage = open_storage(scenario.settings)
    assert not storage.path_of(artifact_name(sha256)).exists()
    assert eventually(lambda: storage.partials() == [])


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def urlsafe_digest(data: bytes) -> str:
    """A wheel RECORD's digest: urlsafe base64 of the sha256, unpadded."""
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel(name: str, version: str) -> bytes:
    """A tiny pure-Python wheel, RECORD and all."""
    info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    tags = "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    files = {
        f"{name}/__init__.py": f"VALUE = {version!r}\n".encode(),
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": tags.encode(),
    }
    record = [f"{path},sha256={urlsafe_digest(data)},{len(data)}" for path, data in files.items()]
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
    return out.getvalue()


def test_pip_installs_from_a_lazy_simple_index(scenario, client, tmp_path):
    """A PEP 503 index and its wheels, synced on_demand: pip resolves and installs."""
    files = []
    links = []
    for name in ("tinypkg", "otherpkg"):
        data = wheel(name, "1.0")
        filename = f"{name}-1.0-py3-none-any.whl"
        files.append(FileSpec.literal(f"packages/{filename}", data))
        digest = hashlib.sha256(data).hexdigest()
        page = f'<a href="../../packages/{filename}#sha256={digest}">{filename}</a>\n'
        files.append(FileSpec.literal(f"simple/{name}/index.html", page.encode()))
        links.append(f'<a href="{name}/">{name}</a>')
    files.append(FileSpec.literal("simple/index.html", "\n".join(links).encode()))
    base = scenario.publish("pypi", files, "on_demand")
    index = f"http://127.0.0.1:{client.server.port}{base}simple/"
    run(
        sys.executable,
        "-m",
        "pip",
        "--isolated",
        "--disable-pip-version-check",
        "install",
        "--no-cache-dir",
        "--no-deps",
        "--index-url",
        index,
        "--trusted-host",
        "127.0.0.1",
        "--target",
        str(tmp_path / "site"),
        "tinypkg==1.0",
        "otherpkg",
    )
    assert (tmp_path / "site" / "tinypkg" / "__init__.py").read_text() == "VALUE = '1.0'\n"
    assert scenario.remote.count("/pypi/packages/tinypkg-1.0-py3-none-any.whl") == 1


def simple_page(name: str, versions: list[str]) -> tuple[FileSpec, list[FileSpec]]:
    """A PEP 503 page of `name` listing these versions, and their wheels."""
    wheels, links = [], []
    for version in versions:
        data = wheel(name, version)
        filename = f"{name}-{version}-py3-none-any.whl"
        wheels.append(FileSpec.literal(f"packages/{filename}", data))
        digest = hashlib.sha256(data).hexdigest()
        links.append(f'<a href="../../packages/{filename}#sha256={digest}">{filename}</a>')
    page = FileSpec.literal(f"simple/{name}/index.html", "\n".join(links).encode())
    return page, wheels


def pip_install(index: str, target, requirement: str) -> None:
    run(
        sys.executable, "-m", "pip", "--isolated", "--disable-pip-version-check", "install",
        "--no-cache-dir", "--no-deps", "--upgrade", "--index-url", index,
        "--trusted-host", "127.0.0.1", "--target", str(target), requirement,
    )  # fmt: skip


def test_pip_through_pull_through_sees_a_new_release_after_max_age(scenario, client, tmp_path):
    """A PEP 503 index behind a pull-through distribution: pip gets the simple page
    (`simple/tinypkg/`, asked with its trailing slash) and the wheel; a new release
    upstream shows only once the page's max age has passed."""
    from django.db.models import F

    from pulp_content.service.keys import LOCATOR
    from pulp_content.service.models import RemoteArtifact

    page, wheels = simple_page("tinypkg", ["1.0"])
    scenario.remote.add_repository("pypi", [page, *wheels])
    url = scenario.remote.base_url + "/pypi/"
    scenario.cli("remote", "create", "pypi", "--url", url, "--policy", "on_demand")
    scenario.cli("distribution", "create", "pypi", "--base-path", "pp", "--remote", "pypi")
    index = f"http://127.0.0.1:{client.server.port}/pulp/content/pp/simple/"
    site = tmp_path / "site"

    pip_install(index, site, "tinypkg")
    assert (site / "tinypkg" / "__init__.py").read_text() == "VALUE = '1.0'\n"
    page_copy = RemoteArtifact.objects.filter(url__endswith="/simple/tinypkg/")
    assert eventually(lambda: page_copy.filter(validated_at__isnull=False).exists())

    page, wheels = simple_page("tinypkg", ["1.0", "2.0"])
    for spec in (page, *wheels):
        scenario.remote.put_file("pypi", spec)
    pip_install(index, site, "tinypkg")  # within the max age: the page pip saw before
    assert (site / "tinypkg" / "__init__.py").read_text() == "VALUE = '1.0'\n"

    app = client.server.app  # a worker in this process: wait until its cache heard of it
    before = app[LOCATOR].cache.epoch if app is not None else 0
    page_copy.update(validated_at=F("validated_at") - dt.timedelta(seconds=301))
    assert app is None or eventually(lambda: app[LOCATOR].cache.epoch > before)
    pip_install(index, site, "tinypkg")
    assert (site / "tinypkg" / "__init__.py").read_text() == "VALUE = '2.0'\n"
    assert scenario.remote.count("/pypi/simple/tinypkg/") == 2  # one revalidation
    assert scenario.remote.count("/pypi/packages/tinypkg-2.0-py3-none-any.whl") == 1
