"""The promises the layout makes, checked: a Django-free core, no import cycles, one
import namespace, and Django configured once."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "pulp_content"

# The core: value types, serving, streaming, downloading, ranges, headers, listing,
# guards' checks, storage and the HTTP handler. Only the modules that talk to the
# database (models, lookup and resolve, ingest, catalog, sync, app wiring, legacy) import
# Django.
CORE = [
    "pulp_content.service.types",
    "pulp_content.service.errors",
    "pulp_content.service.ranges",
    "pulp_content.service.headers",
    "pulp_content.service.paths",
    "pulp_content.service.listing",
    "pulp_content.service.serve",
    "pulp_content.service.stream",
    "pulp_content.service.download",
    "pulp_content.service.verify",
    "pulp_content.service.progress",
    "pulp_content.service.shared",
    "pulp_content.service.follow",
    "pulp_content.service.peers",
    "pulp_content.service.upstream",
    "pulp_content.service.retries",
    "pulp_content.service.storage",
    "pulp_content.service.locks",
    "pulp_content.service.guards",
    "pulp_content.service.cache",
    "pulp_content.service.invalidation",
    "pulp_content.service.filecache",
    "pulp_content.service.passwords",
    "pulp_content.service.clientcert",
    "pulp_content.service.proxies",
    "pulp_content.service.redact",
    "pulp_content.service.text",
    "pulp_content.service.tls",
    "pulp_content.service.keyring",
    "pulp_content.service.remoteurl",
    "pulp_content.service.remoteconfig",
    "pulp_content.service.keys",
    "pulp_content.service.handlers",
    "pulp_content.service.accesslog",
    "pulp_content.service.metrics",
    "pulp_content.service.config",
    "pulp_content.service.urlspace",
    "pulp_content.cli.describe",
    "pulp_content.fixtures.remote",
]

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
heavy = ("django.db.models", "pulp_content.service.models")
loaded = sorted(m for m in sys.modules if m.startswith(heavy))
from django.conf import settings
assert not settings.configured, "configured Django"
assert not loaded, loaded
"""


@pytest.mark.parametrize("module", CORE)
def test_core_module_imports_without_django_settings(module: str, tmp_path: Path) -> None:
    """A fresh interpreter with no settings imports it, and no model module comes along."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, module],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Every project module this file imports, at the top or inside a function."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in modules and not _is_package(name)}


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def import_graph() -> dict[str, set[str]]:
    files = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) - {_module_name(p)} for p in files}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles() -> None:
    """Counting imports inside functions too: a deferred import is still a cycle."""
    assert cycles(import_graph()) == []


def test_the_dispatcher_leaves_the_database_to_lookup() -> None:
    """`resolve` decides from the rows `lookup` reads: it imports no Django, no models
    and no aiohttp of its own."""
    tree = ast.parse((PACKAGE / "service" / "resolve.py").read_text())
    imported = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    imported |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    forbidden = ("django", "aiohttp", "pulp_content.service.models")
    assert "pulp_content.service.lookup" in imported
    assert sorted(m for m in imported if m.startswith(forbidden)) == []


def test_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_one_import_namespace() -> None:
    """Everything the wheel installs lives under pulp_content."""
    top = {p.name for p in PACKAGE.parent.iterdir() if (p / "__init__.py").exists()}
    assert top - {"tests"} == {"pulp_content"}


CONFIGURE_TWICE = """
from pathlib import Path
from pulp_content.service.config import ConfigurationError, Settings, configure_django
home = Path(__import__("sys").argv[1])
configure_django(Settings(home=home, database_url=f"sqlite:///{home}/a.sqlite3"))
configure_django(Settings(home=home / "x", database_url=f"sqlite:///{home}/a.sqlite3"))
try:
    configure_django(Settings(home=home, database_url=f"sqlite:///{home}/b.sqlite3"))
except ConfigurationError as exc:
    print("refused:", exc)
"""


def test_configure_django_twice_with_other_settings_raises(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CONFIGURE_TWICE, str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: Django is configured already"), done.stdout
