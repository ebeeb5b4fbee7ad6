"""`pulp-content resolve` as a user runs it: a fresh process."""

from __future__ import annotations

import json
import os

from tests.helpers import run_command


def test_resolve_runs_in_a_fresh_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PULP_CONTENT_")}
    env["PULP_CONTENT_HOME"] = str(tmp_path / "home")
    done = run_command("resolve", "/pulp/content/nowhere/file.iso", "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["reason"] == "no distribution at this base path"
