"""Which peers are trusted proxies, and who the client behind them is.

A header a proxy sets (X-Client-Cert, X-Forwarded-For) is just as easy for any client to
send, so it counts only when the TCP peer itself is a configured proxy. Nothing here
imports aiohttp or Django.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from pulp_content.service.errors import InvalidInput

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Peers (and forwarded hops) whose parsed address and verdict are remembered: every
# request asks about its peer up to three times (guard, caching headers, access log), and
# parsing an address costs more than the rest of a warm answer's bookkeeping. Bounded: a
# trusted proxy's X-Forwarded-For hops are the client's to choose.
REMEMBERED = 4096

# Loopback only: a proxy on the same host (nginx in front of the service).
DEFAULT_TRUSTED_PROXIES: tuple[Network, ...] = (
    ipaddress.ip_network("127.0.0.0/8"),
    ipaddress.ip_network("::1/128"),
)


def parse_networks(text: str) -> tuple[Network, ...]:
    """Comma-separated addresses or CIDRs, e.g. `127.0.0.1, 10.0.0.0/8, ::1`."""
    networks = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise InvalidInput(f"trusted_proxies: {item!r} is not an address or CIDR") from None
    return tuple(networks)


@functools.lru_cache(maxsize=REMEMBERED)
def _address(text: str | None) -> Address | None:
    if not text:
        return None
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    # A dual-stack socket reports an IPv4 peer as ::ffff:a.b.c.d.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_trusted_proxy(peer: str | None, trusted: Iterable[Network]) -> bool:
    """Whether the TCP peer `peer` (an IP address; None or a socket path: no) is a proxy
    whose headers are believed."""
    verdicts = _latest[0]
    if verdicts.networks is not trusted:
        verdicts = _Verdicts(trusted if isinstance(trusted, tuple) else tuple(trusted))
        if verdicts.networks is trusted:
            _latest[0] = verdicts
    return verdicts.of(peer)


class _Verdicts:
    """Which peers are in `networks`, remembered. Found by the networks' identity (the
    settings' tuple, the same for every request): hashing them per request, as a cache
    keyed on them would, cost more than the rest."""

    def __init__(self, networks: tuple[Network, ...]) -> None:
        self.networks = networks
        self.of = functools.lru_cache(maxsize=REMEMBERED)(self._verdict)

    def _verdict(self, peer: str | None) -> bool:
        address = _address(peer)
        return address is not None and any(address in network for network in self.networks)


# The verdicts for the networks asked about last.
_latest = [_Verdicts(DEFAULT_TRUSTED_PROXIES)]


def is_socket_peer(peer: str | None) -> bool:
    """A unix-socket peer: aiohttp reports its path ('' for an unnamed client socket)."""
    return peer is not None and _address(peer) is None


def forwarded_node(node: str) -> str:
    """The address of an RFC 7239 node (`192.0.2.1:4711`, `[2001:db8::1]:80`; §6)."""
    if node.startswith("["):
        return node[1:].partition("]")[0]
    return node.partition(":")[0] if node.count(":") == 1 else node


def client_address(
    peer: str | None,
    forwarded_for: str | None,
    trusted: Iterable[Network],
    forwarded: Sequence[str] = (),
) -> str:
    """The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    address in X-Forwarded-For (without one: the `for=` nodes of Forwarded, RFC 7239)
    that is not itself a trusted proxy, as nginx's `real_ip_recursive` finds it (the
    entries further left were written by the client and prove nothing).

    A unix-socket peer counts as a proxy here: who may connect to the socket is decided
    by its file mode, and what connects to it is the front web server."""
    networks = tuple(trusted)
    if not is_trusted_proxy(peer, networks) and not is_socket_peer(peer):
        return peer or "-"
    if forwarded_for:
        hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    else:
        hops = [forwarded_node(node) for node in forwarded]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            break  # garbage from here on: stop at the last hop a proxy vouched for
        if not is_trusted_proxy(str(address), networks):
            return str(address)
        peer = str(address)
    return peer or "-"
