"""Plain output, one unit: values as words, nested documents indented, lists in columns."""

from __future__ import annotations

import pytest

from pulp_content.cli.common import plain, plain_lines, table_lines


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        ("", "-"),
        ([], "-"),
        ({}, "-"),
        (True, "yes"),
        (False, "no"),
        (0, "0"),
        (30.0, "30"),
        (0.5, "0.5"),
        (["a", "b"], "a, b"),
        ({"X-Token": "***"}, "X-Token=***"),
        ("on_demand", "on_demand"),
    ],
)
def test_plain(value, shown):
    assert plain(value) == shown


def test_nested_documents_are_indented_below_their_key():
    doc = {
        "path": "/p/a",
        "distribution": {"name": "d", "base_path": "b"},
        "remote_artifacts": [{"remote": "r", "size": 3}, {}],
        "artifact": None,
        "entries": [],
    }
    assert plain_lines(doc) == [
        "path: /p/a",
        "distribution:",
        "  name: d",
        "  base_path: b",
        "remote_artifacts:",
        "  - remote: r",
        "    size: 3",
        "  - -",
        "artifact: -",
        "entries: -",
    ]


def test_table_columns_are_as_wide_as_their_widest_cell():
    rows = [("files", 1, None), ("a-longer-name", 12, "up")]
    assert table_lines(("NAME", "LATEST VERSION", "REMOTE"), rows) == [
        "NAME           LATEST VERSION  REMOTE",
        "files          1               -",
        "a-longer-name  12              up",
    ]
