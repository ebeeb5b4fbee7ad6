"""Download bookkeeping without a network: size bounds and download keys (the shared
download itself against a fake upstream is in test_download.py)."""

from __future__ import annotations

import pytest

from pulp_content.service.errors import TooLarge
from pulp_content.service.progress import key_of, partial_name
from pulp_content.service.remoteconfig import RemoteConfig
from pulp_content.service.types import RemoteRef, RemoteSource
from pulp_content.service.verify import Verifier, check_size

URL = "http://h/pt/f.bin"


def pulled(remote_id: int, url: str = URL) -> RemoteSource:
    config = RemoteConfig(remote_id, f"r{remote_id}", "http://h/pt/", "on_demand")
    return RemoteSource(
        "/pulp/content/pt/f.bin", remote_artifacts=(RemoteRef(None, config, url, None, {}),)
    )


def test_a_body_past_the_remote_max_size_is_refused_as_it_arrives() -> None:
    verifier = Verifier(URL, None, {}, limit=10)
    verifier.update(b"x" * 10)
    with pytest.raises(TooLarge) as caught:
        verifier.update(b"x")
    assert caught.value.limit == 10


def test_a_known_size_past_the_remote_max_size_is_refused_before_downloading() -> None:
    bounded = RemoteConfig(1, "r", "http://h/", "on_demand", max_size=100)
    check_size(bounded, URL, 100)
    check_size(bounded, URL, None)  # unknown yet: the verifier bounds it
    with pytest.raises(TooLarge):
        check_size(bounded, URL, 101)
    check_size(RemoteConfig(2, "r2", "http://h/", "on_demand"), URL, 10**15)


def test_pull_through_downloads_are_keyed_by_remote_and_url() -> None:
    assert key_of(pulled(1)) == key_of(pulled(1))
    assert key_of(pulled(1)) != key_of(pulled(2))  # other credentials, other bounds
    assert key_of(pulled(1)) != key_of(pulled(1, URL + "?x=1"))
    assert partial_name(pulled(1)) == partial_name(pulled(1))
    assert partial_name(pulled(1)) != partial_name(pulled(2))
