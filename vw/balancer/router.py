"""From a request target and a client address to a backend: the route table, the shards
(rendezvous, regions, drain), the bridges, the portal (sans-IO)."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

from vw.balancer.geo import Geo
from vw.balancer.health import Health
from vw.balancer.routes import BRIDGE, PORTAL, SHARD, Route, RouteTable
from vw.balancer.shards import Shard, ShardSet
from vw.common.networks import Networks
from vw.config import BalancerConfig, Config, ShardConfig


@dataclass(eq=False)
class Backend:
    """Where requests go: a shard, a bridge or the portal."""

    name: str
    host: str
    port: int
    #: The shard (whose health a failed connection counts against), or None.
    shard: Shard | None = None
    #: The response header line naming the shard, or b"".
    header: bytes = field(default=b"", repr=False)
    #: Replaced by a reload: connections to it are not used for new requests.
    retired: bool = False


def split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def shards_of(config: Config) -> list[ShardConfig]:
    """The configured shards, or this machine's XMPP server as the only one."""
    local = ShardConfig("local", f"{config.general.bind}:{config.xmpp.http_port}")
    return config.balancer.shards or [local]


class Router:
    def __init__(self, config: Config, geo: Geo) -> None:
        self.geo = geo
        self.shards = ShardSet([], config.balancer.room_memory)
        self._in_use: list[Backend] = []
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Take (new) settings; shards that stay keep their health and their rooms."""
        settings: BalancerConfig = config.balancer
        self.settings = settings
        self.table = RouteTable(settings.portal_prefixes)
        self.trusted = Networks(settings.trusted_proxies)
        self.shards.room_memory = settings.room_memory
        self.shards.replace(
            Shard(s.name, *split_address(s.address),
                  Health(settings.health_interval, settings.health_rise, settings.health_fall),
                  s.weight, s.region, s.drain)
            for s in shards_of(config))
        header = settings.shard_header.encode()
        self.backends = {
            name: Backend(name, shard.host, shard.port, shard,
                          header + b": " + name.encode() + b"\r\n" if header else b"")
            for name, shard in self.shards.shards.items()}
        bind = config.general.bind
        self.bridges = {bridge: Backend(f"bridge:{bridge}", *split_address(address))
                        for bridge, address in settings.bridges.items()}
        self.local_bridge = Backend("bridge", bind, config.bridge.http_port)
        self.portal = Backend("portal", *split_address(settings.portal or
                                                       f"{bind}:{config.portal.http_port}"))
        for backend in self._in_use:
            backend.retired = True
        self._in_use = [*self.backends.values(), *self.bridges.values(), self.local_bridge,
                        self.portal]

    def route(self, target: bytes) -> Route:
        return self.table.route(target)

    def backend(self, route: Route, client: str, now: float,
                exclude: Collection[Shard] = ()) -> Backend | None:
        """The backend for ``route`` from ``client``, other than the shards in ``exclude``
        (those a request could not reach); None if none is available."""
        if route.kind == SHARD:
            shard = self.shards.pick(route.key, self.geo.region(client), now, exclude)
            return None if shard is None else self.backends[shard.name]
        if route.kind == BRIDGE:
            return self.bridges.get(route.key) if self.bridges else self.local_bridge
        if route.kind == PORTAL:
            return self.portal
        return None

    def to_ask(self, route: Route, client: str, exclude: Collection[Shard] = ()) -> Shard | None:
        """The draining shard to ask whether it hosts ``route``'s room before routing it."""
        if route.kind != SHARD or not self.shards.draining():
            return None  # the usual case, spared a second rendezvous choice per request
        return self.shards.to_ask(route.key, self.geo.region(client), exclude)

    def is_trusted(self, host: str) -> bool:
        """Whether ``host`` is a proxy whose PROXY header and X-Forwarded-For count."""
        return host in self.trusted

    def health(self) -> bool:
        """Whether any shard is up."""
        return any(shard.up for shard in self.shards.shards.values())
