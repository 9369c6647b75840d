"""The region of a client address: a CIDR table (the longest prefix wins), else a MaxMind
database's country or continent code mapped to a region, when ``maxminddb`` is installed."""

from __future__ import annotations

import ipaddress
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Geo:
    def __init__(self, networks: dict[str, str], database: Any = None,
                 codes: dict[str, str] | None = None) -> None:
        #: (network, region), longest prefixes first.
        self.networks: list[tuple[Network, str]] = sorted(
            ((ipaddress.ip_network(cidr, strict=False), region)
             for cidr, region in networks.items()),
            key=lambda item: -item[0].prefixlen)
        #: A maxminddb Reader, or None.
        self.database = database
        #: Country (ISO 3166) or continent codes to regions; the country wins.
        self.codes = codes or {}

    def region(self, host: str) -> str:
        """The region of ``host``; "" if unknown."""
        if not self.networks and self.database is None:
            return ""
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return ""
        for network, region in self.networks:
            if address.version == network.version and address in network:
                return region
        if self.database is None:
            return ""
        record = self.database.get(host) or {}
        country = (record.get("country") or {}).get("iso_code", "")
        continent = (record.get("continent") or {}).get("code", "")
        return self.codes.get(country) or self.codes.get(continent, "")


def open_database(path: str) -> Any:
    """A maxminddb Reader for ``path``; None if no path is configured."""
    if not path:
        return None
    import maxminddb  # optional: only needed with a database configured

    return maxminddb.open_database(path)
