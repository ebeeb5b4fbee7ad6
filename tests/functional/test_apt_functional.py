"""apt against a flat repository served lazily: `deb [trusted=yes] URL ./` makes apt ask
for `URL/./Release`, and `dpkg-scanpackages .` writes `Filename: ./pkg.deb`.

apt runs with a private configuration, sources list, state and cache under the test's
temporary directory: the machine's own apt setup is neither read nor touched.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from pulp_content.fixtures.remote import FileSpec
from tests.helpers import need_tool

pytestmark = pytest.mark.functional

PACKAGE = "tinydeb"
DEB = f"{PACKAGE}_1.0_all.deb"
CONTROL = f"""Package: {PACKAGE}
Version: 1.0
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


def flat_repository(work: Path) -> list[FileSpec]:
    """A .deb built with dpkg-deb, its Packages from `dpkg-scanpackages .`, and a Release
    from apt-ftparchive: the usual way to make a flat repository."""
    root = work / "pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(CONTROL)
    (root / "usr" / "share" / PACKAGE).mkdir(parents=True)
    (root / "usr" / "share" / PACKAGE / "hello").write_text("hello from a flat repository\n")
    repo = work / "repo"
    repo.mkdir()
    run(need_tool("dpkg-deb"), "--build", "--root-owner-group", str(root), DEB, cwd=repo)
    packages = run(need_tool("dpkg-scanpackages"), ".", cwd=repo)
    assert f"Filename: ./{DEB}" in packages
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
