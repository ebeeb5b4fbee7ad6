"""What `pip install pulp-content` brings: no matplotlib (the `bench` extra) and no trustme
(the `fixtures` extra); without them the CLI names the extra to install, in one line."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
from packaging.requirements import Requirement

LEFT_OUT = ("matplotlib", "mpl_toolkits", "trustme")


def requirements() -> list[Requirement]:
    return [Requirement(text) for text in importlib.metadata.requires("pulp-content") or []]


def extras_of(name: str) -> set[str]:
    """The extras that bring requirement `name` (empty string: every install)."""
    found = set()
    for req in requirements():
        if req.name != name:
            continue
        if req.marker is None:
            found.add("")
        for extra in ("bench", "fixtures", "test"):
            if req.marker is not None and req.marker.evaluate({"extra": extra}):
                found.add(extra)
    return found


def test_matplotlib_and_trustme_come_only_with_their_extras():
    assert extras_of("matplotlib") == {"bench"}
    assert extras_of("trustme") == {"fixtures"}
    (itself,) = [req for req in requirements() if req.name == "pulp-content"]
    assert itself.extras == {"bench", "fixtures"}  # the tests use both
    assert str(itself.marker) == 'extra == "test"'


LAUNCHER = """
import runpy, site, sys
site.addsitedir(sys.argv[1])
mode, target, *rest = sys.argv[2:]
sys.argv = [target, *rest]
if mode == "-m":
    runpy.run_module(target, run_name="__main__", alter_sys=True)
else:
    exec(target)
"""


@pytest.fixture
def without_extras(tmp_path: Path) -> list[str]:
    """An interpreter that sees this environment's packages but matplotlib and trustme:
    no site-packages (-S), and a directory of links to everything else in it."""
    site = tmp_path / "site"
    site.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not entry.name.lower().startswith(LEFT_OUT):
            (site / entry.name).symlink_to(entry)
    launcher = tmp_path / "launch.py"
    launcher.write_text(LAUNCHER)
    return [sys.executable, "-S", str(launcher), str(site)]


def run(command: list[str], *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "PULP_CONTENT_HOME": str(cwd / "home")}
    return subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
        env=env,
    )


def test_without_the_extras_the_cli_says_what_to_install(without_extras, tmp_path):
    for module in ("matplotlib", "trustme"):
        gone = run(without_extras, "-c", f"import {module}", cwd=tmp_path)
        assert f"No module named '{module}'" in gone.stderr
    assert run(without_extras, "-c", "import aiohttp, django", cwd=tmp_path).returncode == 0
    cli = [*without_extras, "-m", "pulp_content.cli"]
    help_text = run(cli, "bench", "--help", cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "pip install 'pulp-content[bench]'" in help_text.stdout

    plotted = run(cli, "bench", "--quick", "--plot", str(tmp_path / "b.png"), cwd=tmp_path)
    assert (plotted.returncode, plotted.stdout) == (1, "")
    assert plotted.stderr.splitlines() == [
        "Error: --plot needs matplotlib, not installed: pip install 'pulp-content[bench]'"
    ]
    tls = run(cli, "fixture", "serve", "--tls", str(tmp_path / "ca.pem"), cwd=tmp_path)
    assert (tls.returncode, tls.stdout) == (1, "")
    assert tls.stderr.splitlines() == [
        "Error: --tls needs trustme, not installed: pip install 'pulp-content[fixtures]'"
    ]
    # The service itself needs neither.
    migrated = run(cli, "migrate", cwd=tmp_path)
    assert migrated.returncode == 0, migrated.stderr
    resolved = run(cli, "resolve", "/pulp/content/x", cwd=tmp_path)
    assert resolved.returncode == 0 and "action: not_found" in resolved.stdout, resolved
