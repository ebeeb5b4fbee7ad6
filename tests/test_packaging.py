"""What the wheel puts into site-packages: one import namespace, beside PyPI's `fixtures`.

nox installs the project from its wheel (not editable) next to the test extra, which
pulls PyPI's `fixtures` (a testing library that testtools and OpenStack depend on): the
project once installed top-level packages named `service` and `fixtures` over it.
"""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys


def test_the_distribution_installs_only_pulp_content() -> None:
    dist = importlib.metadata.distribution("pulp-content")
    assert (dist.read_text("top_level.txt") or "").split() == ["pulp_content"]
    installed = {str(f).split("/")[0] for f in dist.files or []}
    assert not installed & {"service", "fixtures", "pulp_content_cli"}, installed


def test_pypi_fixtures_and_pulp_content_work_side_by_side() -> None:
    """Both imported in one fresh interpreter, each used for what it is."""
    script = """
import fixtures
from pulp_content.fixtures.presets import PRESETS
from pulp_content.service.types import LocalArtifact

class Temp(fixtures.Fixture):
    def _setUp(self):
        self.value = sorted(PRESETS)

with Temp() as temp:
    print(temp.value, fixtures.__name__, LocalArtifact.__module__)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "fixtures pulp_content.service.types" in done.stdout
