"""Trusted proxies: whose headers count, and who the client behind them is."""

from __future__ import annotations

import pytest

from pulp_content.service.config import apply_config_file, load_settings
from pulp_content.service.errors import InvalidInput
from pulp_content.service.proxies import (
    DEFAULT_TRUSTED_PROXIES,
    client_address,
    is_trusted_proxy,
    parse_networks,
)


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),  # an IPv4 peer on a dual-stack socket
        ("10.0.0.1", False),
        ("::2", False),
        (None, False),
        ("", False),
        ("/run/pulp-content.sock", False),
    ],
)
def test_default_is_loopback_only(peer, trusted):
    assert is_trusted_proxy(peer, DEFAULT_TRUSTED_PROXIES) is trusted


def test_configured_networks():
    networks = parse_networks(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert is_trusted_proxy("10.20.30.40", networks)
    assert is_trusted_proxy("192.0.2.7", networks)
    assert is_trusted_proxy("2001:db8::5", networks)
    assert not is_trusted_proxy("127.0.0.1", networks)
    assert parse_networks("") == ()


def test_a_bad_network_is_one_clear_error():
    with pytest.raises(InvalidInput, match=r"'10\.0\.0\.300' is not an address or CIDR"):
        parse_networks("10.0.0.0/8,10.0.0.300")


def test_client_address_behind_proxies():
    trusted = parse_networks("127.0.0.1, 10.0.0.0/8")
    # Not from a proxy: X-Forwarded-For is the client's own claim.
    assert client_address("198.51.100.1", "203.0.113.9", trusted) == "198.51.100.1"
    # From a proxy: the nearest hop that is not a proxy; what the client wrote is skipped.
    assert client_address("127.0.0.1", "1.2.3.4, 203.0.113.9", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", "203.0.113.9, 10.1.1.1", trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", None, trusted) == "127.0.0.1"
    assert client_address("127.0.0.1", "10.1.1.1", trusted) == "10.1.1.1"
    assert client_address("127.0.0.1", "garbage, 10.1.1.1", trusted) == "10.1.1.1"


def test_client_address_from_forwarded_nodes():
    """RFC 7239 `for=` nodes, when there is no X-Forwarded-For: ports and brackets go."""
    trusted = parse_networks("127.0.0.1")
    nodes = ["198.51.100.1", "[2001:db8::1]:4711"]
    assert client_address("127.0.0.1", None, trusted, nodes) == "2001:db8::1"
    assert client_address("127.0.0.1", None, trusted, ["203.0.113.9:80"]) == "203.0.113.9"
    assert client_address("127.0.0.1", None, trusted, ["unknown"]) == "127.0.0.1"
    assert client_address("198.51.100.7", None, trusted, nodes) == "198.51.100.7"
    # X-Forwarded-For wins when both are there.
    assert client_address("127.0.0.1", "203.0.113.5", trusted, nodes) == "203.0.113.5"


def test_a_unix_socket_peer_is_a_proxy_for_the_client_address():
    """The socket's file mode decides who connects: the front web server. Its headers
    name the client; without them there is no address to give."""
    trusted = parse_networks("10.0.0.0/8")
    assert client_address("", "203.0.113.9", trusted) == "203.0.113.9"
    assert client_address("/run/nginx.sock", "203.0.113.9", trusted) == "203.0.113.9"
    assert client_address("", None, trusted) == "-"
    # X-Client-Cert and the like still count from trusted proxies only.
    assert not is_trusted_proxy("", trusted)


def test_settings_from_the_environment_and_toml(tmp_path):
    env = {"PULP_CONTENT_HOME": str(tmp_path)}
    assert load_settings(env).trusted_proxies == DEFAULT_TRUSTED_PROXIES
    env["PULP_CONTENT_TRUSTED_PROXIES"] = "10.0.0.0/8,::1"
    assert [str(n) for n in load_settings(env).trusted_proxies] == ["10.0.0.0/8", "::1/128"]
    config = tmp_path / "pulp-content.toml"
    config.write_text('trusted_proxies = ["192.0.2.0/24", "127.0.0.1"]\nauth_failure_limit = 3\n')
    toml_env = {"PULP_CONTENT_HOME": str(tmp_path)}
    apply_config_file(str(config), toml_env)
    settings = load_settings(toml_env)
    assert [str(n) for n in settings.trusted_proxies] == ["192.0.2.0/24", "127.0.0.1/32"]
    assert settings.auth_failure_limit == 3
    with pytest.raises(InvalidInput, match="PULP_CONTENT_AUTH_FAILURE_WINDOW"):
        load_settings({**env, "PULP_CONTENT_AUTH_FAILURE_WINDOW": "-1"})


@pytest.mark.parametrize("name", ["AUTH_FAILURE_WINDOW", "AUTH_FAILURE_LIMIT", "FAILURE_COOLDOWN"])
@pytest.mark.parametrize("text", ["nan", "inf", "-1", "soon"])
def test_numeric_settings_are_finite_and_not_negative(tmp_path, name, text):
    env = {"PULP_CONTENT_HOME": str(tmp_path), f"PULP_CONTENT_{name}": text}
    with pytest.raises(InvalidInput, match=f"PULP_CONTENT_{name} must be a non-negative number"):
        load_settings(env)
