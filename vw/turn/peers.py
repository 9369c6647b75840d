"""Which peer addresses a TURN allocation may reach (RFC 8656 §21.3, coturn's denied-peer-ip).

By default a relay only talks to the public internet: loopback, private, link-local (the cloud
metadata address 169.254.169.254 included), carrier-grade NAT, documentation, benchmarking,
multicast, reserved and broadcast ranges are refused, for IPv4 and IPv6 alike. An IPv6 address
that embeds an IPv4 one (IPv4-mapped ``::ffff:a.b.c.d``, IPv4-compatible ``::a.b.c.d``,
IPv4-translated ``::ffff:0:a.b.c.d``, 6to4 ``2002:AABB:CCDD::/48``) is judged as that IPv4
address, so write allow and deny ranges for such addresses in IPv4.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: The ranges refused unless a configured allow range covers the address.
DEFAULT_DENIED: tuple[Network, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "0.0.0.0/8",  # "this" network
        "10.0.0.0/8",  # private
        "100.64.0.0/10",  # carrier-grade NAT
        "127.0.0.0/8",  # loopback
        "169.254.0.0/16",  # link-local, cloud metadata
        "172.16.0.0/12",  # private
        "192.0.0.0/24",  # IETF protocol assignments
        "192.0.2.0/24",  # TEST-NET-1
        "192.88.99.0/24",  # 6to4 relay anycast
        "192.168.0.0/16",  # private
        "198.18.0.0/15",  # benchmarking
        "198.51.100.0/24",  # TEST-NET-2
        "203.0.113.0/24",  # TEST-NET-3
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, 255.255.255.255 broadcast
        "::/128",  # unspecified
        "::1/128",  # loopback
        "64:ff9b::/96",  # NAT64 well-known prefix
        "64:ff9b:1::/48",  # NAT64 local-use prefix
        "100::/64",  # discard-only
        "2001:db8::/32",  # documentation
        "fc00::/7",  # unique local
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated)
        "ff00::/8",  # multicast
    )
)

_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")


def _network(cidr: str) -> Network:
    try:
        return ipaddress.ip_network(cidr)
    except ValueError as e:
        raise ValueError(f"bad peer address range {cidr!r}: {e}") from None


def _judged(address: Address) -> Address:
    """The address to judge: the IPv4 address an IPv6 one embeds, or the address itself."""
    if isinstance(address, ipaddress.IPv4Address):
        return address
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if (value >> 32 == 0 and value > 1) or address in _TRANSLATED:  # not :: and ::1
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)
    return address


@dataclass
class PeerPolicy:
    """Allow and deny CIDR ranges on top of :data:`DEFAULT_DENIED`.

    An address in a ``deny`` range is refused; else one in an ``allow`` range is permitted
    (tests allow ``127.0.0.1/32``); else it is permitted unless a default range covers it.
    """

    allow: Sequence[str] = ()
    deny: Sequence[str] = ()
    _allow: tuple[Network, ...] = field(init=False, repr=False)
    _deny: tuple[Network, ...] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._allow = tuple(_network(cidr) for cidr in self.allow)
        self._deny = tuple(_network(cidr) for cidr in self.deny)

    def permitted(self, ip: str) -> bool:
        """Whether a relay may exchange data with ``ip``; ValueError if it is no IP address."""
        try:
            address = _judged(ipaddress.ip_address(ip))
        except ValueError:
            raise ValueError(f"bad peer address {ip!r}") from None
        if any(address in network for network in self._deny):
            return False
        if any(address in network for network in self._allow):
            return True
        return not any(address in network for network in DEFAULT_DENIED)
