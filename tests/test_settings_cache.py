"""Settings of the warm path: the cache bounds."""

from __future__ import annotations

import pytest

from pulp_content.service.config import load_settings
from pulp_content.service.errors import InvalidInput


def test_cache_bounds_default_and_zero():
    settings = load_settings({"PULP_CONTENT_HOME": "/tmp/x"})
    assert (settings.cache_size, settings.negative_cache_size) == (100_000, 50_000)
    off = load_settings({"PULP_CONTENT_CACHE_SIZE": "0", "PULP_CONTENT_NEGATIVE_CACHE_SIZE": "5"})
    assert (off.cache_size, off.negative_cache_size) == (0, 5)


@pytest.mark.parametrize("value", ["-1", "many", "1e6", "nan", "inf"])
def test_a_cache_bound_is_a_number_of_entries(value):
    with pytest.raises(InvalidInput, match="PULP_CONTENT_CACHE_SIZE"):
        load_settings({"PULP_CONTENT_CACHE_SIZE": value})
