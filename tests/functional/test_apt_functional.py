"""apt against a flat repository served lazily: `deb [trusted=yes] URL ./` makes apt ask
for `URL/./Release`, and `dpkg-scanpackages .` writes `Filename: ./pkg.deb`.

apt runs with a private configuration, sources list, state and cache under the test's
temporary directory: the machine's own apt setup is neither read nor touched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from pulp_content.fixtures.background import Background
from pulp_content.fixtures.remote import FileSpec, FixtureRemote
from tests.helpers import eventually, need_tool

pytestmark = pytest.mark.functional

PACKAGE = "tinydeb"
DEB = f"{PACKAGE}_1.0_all.deb"


def control(version: str) -> str:
    return f"""Package: {PACKAGE}
Version: {version}
Architecture: all
Maintainer: Tests <tests@example.com>
Description: a tiny package for the apt test
"""


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    done = subprocess.run(
        args, cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, f"{args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def flat_repository(work: Path, version: str = "1.0") -> list[FileSpec]:
    """A .deb built with dpkg-deb, its Packages from `dpkg-scanpackages .`, and a Release
    from apt-ftparchive: the usual way to make a flat repository. Called again with
    another version, it adds that version's .deb and rewrites Packages and Release."""
    root = work / f"pkg-{version}"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(control(version))
    (root / "usr" / "share" / PACKAGE).mkdir(parents=True)
    (root / "usr" / "share" / PACKAGE / "hello").write_text(f"hello from version {version}\n")
    repo = work / "repo"
    repo.mkdir(exist_ok=True)
    deb = f"{PACKAGE}_{version}_all.deb"
    run(need_tool("dpkg-deb"), "--build", "--root-owner-group", str(root), deb, cwd=repo)
    packages = run(need_tool("dpkg-scanpackages"), ".", cwd=repo)
    assert f"Filename: ./{deb}" in packages
    (repo / "Packages").write_text(packages)
    release = run(need_tool("apt-ftparchive"), "release", ".", cwd=repo)
    (repo / "Release").write_text(release)
    return [FileSpec.literal(p.name, p.read_bytes()) for p in sorted(repo.iterdir())]


def private_apt(work: Path, source: str) -> dict[str, str]:
    """The environment of an apt that reads and writes only below `work`."""
    apt = work / "apt"
    for sub in ("apt.conf.d", "sources.list.d", "preferences.d", "trusted.gpg.d", "log"):
        (apt / sub).mkdir(parents=True)
    for sub in ("state/lists/partial", "cache/archives/partial"):
        (apt / sub).mkdir(parents=True)
    (apt / "status").write_text("")
    (apt / "sources.list").write_text(source + "\n")
    settings: dict[str, object] = {
        "Dir::Etc::main": "/dev/null",
        "Dir::Etc::parts": apt / "apt.conf.d",
        "Dir::Etc::sourcelist": apt / "sources.list",
        "Dir::Etc::sourceparts": apt / "sources.list.d",
        "Dir::Etc::preferences": apt / "preferences",
        "Dir::Etc::preferencesparts": apt / "preferences.d",
        "Dir::Etc::trusted": apt / "trusted.gpg",
        "Dir::Etc::trustedparts": apt / "trusted.gpg.d",
        "Dir::State": apt / "state",
        "Dir::State::status": apt / "status",
        "Dir::Cache": apt / "cache",
        "Dir::Log": apt / "log",
        "Debug::NoLocking": "true",
        "Acquire::Languages": "none",
        "Acquire::http::Proxy": "DIRECT",
    }
    if os.geteuid() == 0:
        # As root apt downloads as the _apt user, who cannot write the test's directory.
        settings["APT::Sandbox::User"] = "root"
    config = apt / "apt.conf"
    config.write_text("".join(f'{key} "{value}";\n' for key, value in settings.items()))
    return {**os.environ, "APT_CONFIG": str(config), "LC_ALL": "C"}


def test_apt_updates_and_downloads_from_a_lazy_flat_repository(scenario, client, tmp_path):
    apt_get = need_tool("apt-get")
    files = flat_repository(tmp_path)
    base = scenario.publish("flat", files, "on_demand")
    url = f"http://127.0.0.1:{client.server.port}{base}"
    env = private_apt(tmp_path, f"deb [trusted=yes] {url} ./")

    update = run(apt_get, "update", cwd=tmp_path, env=env)
    # InRelease and Release.gpg are missing (an unsigned repository): "Ign", as meant.
    assert "Err:" not in update, update
    for name in ("Release", "Packages"):
        assert f"{url.rstrip('/')} ./ {name} [" in update, update  # Get:N URL ./ NAME [SIZE]
    lists = tmp_path / "apt" / "state" / "lists"
    assert any(p.name.endswith("_._Packages") for p in lists.iterdir()), update

    download = tmp_path / "download"
    download.mkdir()
    run(apt_get, "download", PACKAGE, cwd=download, env=env)
    deb = next(f for f in files if f.relative_path == DEB)
    fetched = (download / DEB).read_bytes()
    assert hashlib.sha256(fetched).digest() == hashlib.sha256(deb.content()).digest()
    # Fetched from the upstream once, on apt's request (on_demand), through ./ paths.
    assert scenario.remote.count(f"/flat/{DEB}") == 1
    assert scenario.remote.count("/flat/Release") == 1


def candidate(apt_cache: str, work: Path, env: dict[str, str]) -> str:
    """The version of the package apt would install now."""
    policy = run(apt_cache, "policy", PACKAGE, cwd=work, env=env)
    return policy.split("Candidate:", 1)[1].split()[0]


def age_pulled_copies(seconds: float, client) -> None:
    """Every pull-through copy last confirmed `seconds` earlier: the max age passing,
    without waiting for it. Each worker's cache hears of the change milliseconds later;
    a worker in this process is waited for."""
    from django.db.models import F

    from pulp_content.service.keys import LOCATOR
    from pulp_content.service.models import RemoteArtifact

    app = client.server.app
    cache = app[LOCATOR].cache if app is not None else None
    before = cache.epoch if cache is not None else 0
    delta = dt.timedelta(seconds=seconds)
    RemoteArtifact.objects.update(validated_at=F("validated_at") - delta)
    assert cache is None or eventually(lambda: cache.epoch > before)


def test_apt_through_pull_through_sees_a_new_release_after_max_age_and_works_offline(
    scenario, client, tmp_path
):
    """apt on a pull-through distribution of a flat repository: the upstream publishes
    a new version; within the max age apt sees the old one, after it the new one (one
    revalidation of Release); then the upstream goes away and apt still updates and
    downloads from what was fetched."""
    apt_get, apt_cache = need_tool("apt-get"), need_tool("apt-cache")
    upstream = FixtureRemote()  # this test's own: it is stopped half-way
    url = f"http://127.0.0.1:{client.server.port}/pulp/content/deb/"
    env = private_apt(tmp_path, f"deb [trusted=yes] {url} ./")
    with Background(upstream):
        upstream.add_repository("deb", flat_repository(tmp_path))
        scenario.cli(
            "remote", "create", "deb", "--url", upstream.base_url + "/deb/",
            "--policy", "on_demand", "--connect-timeout", "2",
        )  # fmt: skip
        scenario.cli("distribution", "create", "deb", "--base-path", "deb", "--remote", "deb")
        first = run(apt_get, "update", cwd=tmp_path, env=env)
        assert "Err:" not in first and candidate(apt_cache, tmp_path, env) == "1.0", first

        for spec in flat_repository(tmp_path, "2.0"):
            upstream.put_file("deb", spec)
        within = run(apt_get, "update", cwd=tmp_path, env=env)
        assert candidate(apt_cache, tmp_path, env) == "1.0", within  # still fresh here
        assert upstream.count("/deb/Release") == 1

        age_pulled_copies(301, client)  # past the default max age of 300 s
        after = run(apt_get, "update", cwd=tmp_path, env=env)
        assert "Err:" not in after and candidate(apt_cache, tmp_path, env) == "2.0", after
        assert upstream.count("/deb/Release") == 2  # one revalidation
        assert upstream.count("/deb/Packages") == 2
        assert upstream.count(f"/deb/{PACKAGE}_1.0_all.deb") == 0  # packages: on request

        download = tmp_path / "download"
        download.mkdir()
        run(apt_get, "download", PACKAGE, cwd=download, env=env)
        new_deb = f"{PACKAGE}_2.0_all.deb"
        fetched = hashlib.sha256((download / new_deb).read_bytes()).hexdigest()
        assert fetched == upstream.repositories["deb"].digests[new_deb]

    age_pulled_copies(301, client)  # stale, and the upstream is gone: served from the copies
    offline = run(apt_get, "update", cwd=tmp_path, env=env)
    # InRelease was never fetched (the upstream had none: an unsigned repository), so
    # it is the one error (a 502, after which apt keeps the lists it has); every file
    # fetched before is served, stale, with its age.
    errors = [line for line in offline.splitlines() if line.startswith(("Err:", "E:"))]
    assert all(line.endswith(" InRelease") for line in errors), offline
    assert candidate(apt_cache, tmp_path, env) == "2.0", offline
    for name in ("Release", "Packages"):
        copy = client.get(f"/pulp/content/deb/{name}")
        assert copy.status == 200 and int(copy.headers["Age"]) >= 301
    (download / new_deb).unlink()
    run(apt_get, "download", PACKAGE, cwd=download, env=env)
    assert hashlib.sha256((download / new_deb).read_bytes()).hexdigest() == fetched
