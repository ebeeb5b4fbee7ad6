"""The content origin and path prefix settings: what is accepted, and the one line that
refuses the rest (from the environment, and from a TOML file)."""

from __future__ import annotations

import pytest

from pulp_content.service.config import DEFAULT_ORIGIN, apply_config_file, load_settings
from pulp_content.service.errors import InvalidInput
from pulp_content.service.urlspace import CONTENT_PREFIX, absolute, distribution_url

ORIGIN = "PULP_CONTENT_CONTENT_ORIGIN"
PREFIX = "PULP_CONTENT_CONTENT_PATH_PREFIX"


def loaded(tmp_path, **env: str):
    return load_settings({"PULP_CONTENT_HOME": str(tmp_path), **env})


def test_defaults(tmp_path):
    settings = loaded(tmp_path)
    assert settings.content_prefix == CONTENT_PREFIX == "/pulp/content/"
    assert settings.content_origin is None
    assert settings.public_origin == DEFAULT_ORIGIN == "http://127.0.0.1:24816"


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("https://content.example.com", "https://content.example.com"),
        ("https://content.example.com/", "https://content.example.com"),
        ("http://10.0.0.5:8080", "http://10.0.0.5:8080"),
        ("http://[::1]:24816", "http://[::1]:24816"),
    ],
)
def test_origins_accepted(tmp_path, given, kept):
    settings = loaded(tmp_path, **{ORIGIN: given})
    assert settings.content_origin == settings.public_origin == kept


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("content.example.com", "must be scheme://host[:port]"),
        ("ftp://content.example.com", "must be scheme://host[:port]"),
        ("https://", "must be scheme://host[:port]"),
        ("https://content.example.com/pulp", "with no path"),
        ("https://content.example.com?a=b", "with no path"),
        ("https://content.example.com#top", "with no path"),
        ("https://user:pw@content.example.com", "must not carry a user name or password"),
        ("https://content.example.com:99999", "Port out of range"),
        ("https://[::1", "Invalid IPv6 URL"),
        ("https://content.example.com\n", "control character"),
    ],
)
def test_origins_refused(tmp_path, given, message):
    with pytest.raises(InvalidInput, match=ORIGIN) as refused:
        loaded(tmp_path, **{ORIGIN: given})
    assert message in str(refused.value)
    assert ":pw@" not in str(refused.value)  # a password given there is never repeated


@pytest.mark.parametrize("given", ["/content/", "/a/b-c/d_e.f~/", "/livez-not/", "/pulp/"])
def test_prefixes_accepted(tmp_path, given):
    assert loaded(tmp_path, **{PREFIX: given}).content_prefix == given


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("/", "at least one segment"),
        ("content/", "start and end with '/'"),
        ("/content", "start and end with '/'"),
        ("//", "at least one segment"),
        ("/a//b/", "at least one segment"),
        ("/a b/", "letters, digits"),
        ("/caf\u00e9/", "letters, digits"),
        ("/a/../", "'..' segment"),
        ("/./", "'.' or '..' segment"),
        ("/livez/", "must not begin with /livez"),
        ("/readyz/x/", "must not begin with /readyz"),
        ("/metrics/", "must not begin with /metrics"),
        ("/health/", "must not begin with /health"),
    ],
)
def test_prefixes_refused(tmp_path, given, message):
    with pytest.raises(InvalidInput, match=PREFIX) as refused:
        loaded(tmp_path, **{PREFIX: given})
    assert message in str(refused.value)


def test_toml_keys_are_the_settings_names(tmp_path):
    config = tmp_path / "pulp-content.toml"
    config.write_text('content_origin = "https://c.example.com"\ncontent_path_prefix = "/c/"\n')
    env: dict[str, str] = {"PULP_CONTENT_HOME": str(tmp_path)}
    apply_config_file(str(config), env)
    settings = load_settings(env)
    assert (settings.content_origin, settings.content_prefix) == ("https://c.example.com", "/c/")


def test_urls():
    assert absolute(None, "/pulp/content/a/") == "/pulp/content/a/"
    assert absolute("https://c.example.com", "/pulp/content/a/") == (
        "https://c.example.com/pulp/content/a/"
    )
    url = distribution_url("http://h:1", "/c/", "fedora/40 beta")
    assert url == "http://h:1/c/fedora/40%20beta/"
