"""The balancer's counters, for /stats (JSON) and /metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from vw.balancer.router import Router


@dataclass
class Stats:
    connections: int = 0
    active: int = 0
    tunnels: int = 0
    requests: int = 0
    #: Requests by backend name.
    routed: Counter[str] = field(default_factory=Counter)
    #: Refused connections and requests, by reason (status code or limit).
    refused: Counter[str] = field(default_factory=Counter)
    #: Failed connections to backends, by backend name.
    backend_failures: Counter[str] = field(default_factory=Counter)
    #: Requests sent to another shard after a failed connection, by the shard that failed.
    retries: Counter[str] = field(default_factory=Counter)
    #: Requests sent again on a new connection after a reused one closed unanswered.
    resent: Counter[str] = field(default_factory=Counter)
    #: Questions to draining shards about rooms not seen here, by shard.
    drain_queries: Counter[str] = field(default_factory=Counter)
    #: Connections passed through to a target, by forward.
    forwarded: Counter[str] = field(default_factory=Counter)


def snapshot(stats: Stats, router: Router) -> dict[str, object]:
    """Stats and shard states, as JSON."""
    return {
        "connections": stats.connections, "active": stats.active, "tunnels": stats.tunnels,
        "requests": stats.requests, "routed": dict(stats.routed),
        "refused": dict(stats.refused), "backend_failures": dict(stats.backend_failures),
        "retries": dict(stats.retries), "resent": dict(stats.resent),
        "drain_queries": dict(stats.drain_queries),
        "forwarded": dict(stats.forwarded),
        "shards": shard_list(router),
    }


def shard_list(router: Router) -> list[dict[str, object]]:
    return [{"name": s.name, "address": f"{s.host}:{s.port}", "up": s.up, "drain": s.drain,
             "weight": s.weight, "region": s.region, "rooms": len(s.rooms)}
            for s in router.shards.shards.values()]


class StatsCollector(Collector):
    def __init__(self, stats: Stats, router: Router) -> None:
        self.stats = stats
        self.router = router

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.stats
        yield CounterMetricFamily("vw_balancer_connections", "Client connections accepted",
                                  value=stats.connections)
        yield GaugeMetricFamily("vw_balancer_active_connections", "Client connections open",
                                value=stats.active)
        yield GaugeMetricFamily("vw_balancer_tunnels", "WebSocket tunnels open",
                                value=stats.tunnels)
        yield CounterMetricFamily("vw_balancer_requests", "Requests", value=stats.requests)
        for name, help_text, counter, label in (
                ("vw_balancer_routed", "Requests by backend", stats.routed, "backend"),
                ("vw_balancer_refused", "Refusals by reason", stats.refused, "reason"),
                ("vw_balancer_backend_failures", "Failed backend connections",
                 stats.backend_failures, "backend"),
                ("vw_balancer_retries", "Requests sent to another shard after a failed "
                 "connection, by the shard that failed", stats.retries, "backend"),
                ("vw_balancer_resent", "Requests sent again on a new connection after a "
                 "reused one closed unanswered", stats.resent, "backend"),
                ("vw_balancer_drain_queries", "Draining shards asked whether they host a room "
                 "not seen here", stats.drain_queries, "backend"),
                ("vw_balancer_forwarded", "Connections passed through to a target, by "
                 "forward", stats.forwarded, "forward")):
            family = CounterMetricFamily(name, help_text, labels=[label])
            for key, count in sorted(counter.items()):
                family.add_metric([key], count)
            yield family
        up = GaugeMetricFamily("vw_balancer_shard_up", "Shard health (1 up)", labels=["shard"])
        drain = GaugeMetricFamily("vw_balancer_shard_drain", "Shard draining (1)",
                                  labels=["shard"])
        for shard in self.router.shards.shards.values():
            up.add_metric([shard.name], int(shard.up))
            drain.add_metric([shard.name], int(shard.drain))
        yield up
        yield drain
