"""A set of IP networks from CIDR strings, asked whether an address belongs to it; the socket
family of a textual address."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable


def family_of(host: str) -> socket.AddressFamily:
    """AF_INET6 for an IPv6 address (or interface) in text, else AF_INET."""
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def endpoint(host: str, port: int) -> str:
    """``host:port`` as URLs write it (``[2001:db8::1]:3478`` for IPv6)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def reflexive(source: tuple) -> tuple[str, int]:
    """The (host, port) a STUN answer names for a datagram's ``source`` (XOR-MAPPED-ADDRESS):
    an IPv4 sender that a dual-stack socket sees as ``::ffff:a.b.c.d`` is named by its IPv4
    address; IPv6 flow information and scope are left out."""
    host = source[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]
    return host, source[1]


class Networks:
    """The networks of ``cidrs``; ``host in networks`` for a textual address (an IPv4 address
    seen as IPv4-mapped IPv6 by a dual-stack socket counts as IPv4; not an address: no)."""

    def __init__(self, cidrs: Iterable[str]) -> None:
        self.networks = [ipaddress.ip_network(cidr, strict=False) for cidr in cidrs]

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, host: object) -> bool:
        if not self.networks or not isinstance(host, str):
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in network for network in self.networks)
