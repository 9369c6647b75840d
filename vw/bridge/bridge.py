"""The bridge: conferences on one UDP transport, the bridge channel, stats (sans-IO)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from vw.bridge.allocator import ReceiverState, receiver_state
from vw.bridge.channel import (
    ChannelMessage,
    EndpointMessage,
    EndpointStats,
    LastNChanged,
    ReceiverVideoConstraints,
    relayed_message,
    relayed_stats,
)
from vw.bridge.conference import Conference, Endpoint
from vw.bridge.ice import Address
from vw.bridge.transport import BridgeTransport
from vw.rtp.certificate import DtlsCertificate

VERSION = "vw-bridge 0.1.0"
#: Seconds between allocations that follow the receivers' bandwidth estimates.
REALLOCATE_EVERY = 1.0
#: Seconds over which packet and bit rates are measured.
RATE_INTERVAL = 1.0
#: Endpoints, and packets per second in plus out, that make a stress level of 1.
ENDPOINT_CAPACITY = 500
PACKET_RATE_CAPACITY = 50_000


@dataclass
class Rates:
    """Packet and bit rates in and out over the last interval."""

    packets_in: float = 0.0
    packets_out: float = 0.0
    bits_in: float = 0.0
    bits_out: float = 0.0
    _totals: tuple[int, int, int, int] = (0, 0, 0, 0)
    _since: float | None = None

    def update(self, totals: tuple[int, int, int, int], now: float) -> None:
        if self._since is not None and now - self._since < RATE_INTERVAL:
            return
        if self._since is not None:
            elapsed = now - self._since
            deltas = [max(0, new - old) / elapsed for new, old in zip(totals, self._totals,
                                                                       strict=True)]
            self.packets_in, self.packets_out = deltas[0], deltas[1]
            self.bits_in, self.bits_out = deltas[2] * 8, deltas[3] * 8
        self._totals = totals
        self._since = now


class Bridge:
    """Everything one bridge process serves."""

    def __init__(self, bridge_id: str, certificate: DtlsCertificate,
                 send: Callable[[bytes, Address], None], host_candidates: list[Address],
                 websocket_base_url: str, now: Callable[[], float],
                 advertised: Address | None = None, connect_timeout: float = 60.0,
                 path_changed: Callable[[Address | None, Address | None], None] | None = None
                 ) -> None:
        self.id = bridge_id
        self.now = now
        self.host_candidates = host_candidates
        self.advertised = advertised
        self.websocket_base_url = websocket_base_url.rstrip("/")
        self.transport = BridgeTransport(certificate, send, connect_timeout, path_changed)
        self.draining = False
        self.rates = Rates()

    @property
    def conferences(self) -> dict[str, Conference]:
        return self.transport.conferences

    def expire_conference(self, conference: Conference) -> None:
        for endpoint in list(conference.endpoints.values()):
            self.transport.remove_endpoint(endpoint, self.now())
        self.conferences.pop(conference.id, None)

    def find_endpoint(self, conference_id: str, endpoint_id: str) -> Endpoint | None:
        conference = self.conferences.get(conference_id)
        return conference.endpoints.get(endpoint_id) if conference else None

    def websocket_url(self, endpoint: Endpoint) -> str:
        return (f"{self.websocket_base_url}/colibri-ws/{self.id}/{endpoint.conference.id}/"
                f"{endpoint.id}?pwd={endpoint.channel_pwd}")

    # -- the bridge channel ----------------------------------------------------------------

    def channel_message(self, endpoint: Endpoint, message: ChannelMessage) -> None:
        conference = endpoint.conference
        if isinstance(message, EndpointMessage):
            frame = relayed_message(endpoint.id, message)
            targets = ([conference.endpoints.get(message.to)] if message.to
                       else [e for e in conference.endpoints.values() if e is not endpoint])
            for target in targets:
                if target is not None and target.channel_send is not None:
                    target.channel_send(frame)
        elif isinstance(message, EndpointStats):
            frame = relayed_stats(endpoint.id, message)
            for target in conference.endpoints.values():
                if target is not endpoint and target.channel_send is not None:
                    target.channel_send(frame)
        elif isinstance(message, ReceiverVideoConstraints):
            conference.set_constraints(endpoint, receiver_state(message), self.now())
        elif isinstance(message, LastNChanged):
            state = conference.constraints.get(endpoint.id, ReceiverState(default_max_height=-1))
            conference.set_constraints(endpoint, dataclasses.replace(state,
                                                                     last_n=message.last_n),
                                       self.now())

    # -- timers and stats ------------------------------------------------------------------

    def tick(self) -> None:
        now = self.now()
        self.rates.update(self.totals(), now)
        for endpoint in self.transport.tick(now):
            self.transport.remove_endpoint(endpoint, now)
        for conference in self.conferences.values():
            conference.dominant_speaker_changed(now)
            if conference.constraints and now - conference.allocated >= REALLOCATE_EVERY:
                conference.reallocate(now)
            for endpoint in conference.endpoints.values():
                endpoint.rtcp_due(now)

    def _endpoints(self) -> list[Endpoint]:
        return [e for c in self.conferences.values() for e in c.endpoints.values()]

    def totals(self) -> tuple[int, int, int, int]:
        """Packets in, packets out, bytes in, bytes out since the bridge started."""
        endpoints = self._endpoints()
        current = (sum(e.stats.packets_in for e in endpoints),
                   sum(e.stats.packets_out for e in endpoints),
                   sum(e.stats.bytes_in for e in endpoints),
                   sum(e.stats.bytes_out for e in endpoints))
        return tuple(a + b for a, b in zip(current, self.transport.departed, strict=True))

    def stats(self) -> dict[str, Any]:
        endpoints = self._endpoints()
        packets_in, packets_out, bytes_in, bytes_out = self.totals()
        rates = self.rates
        rtts = [e.reports.rtt for e in endpoints if e.reports.rtt is not None]
        stress = max(len(endpoints) / ENDPOINT_CAPACITY,
                     (rates.packets_in + rates.packets_out) / PACKET_RATE_CAPACITY)
        return {
            "conferences": len(self.conferences),
            "endpoints": len(endpoints),
            "connected_endpoints": sum(1 for e in endpoints if e.connected),
            "packets_received": packets_in,
            "packets_sent": packets_out,
            "bytes_received": bytes_in,
            "bytes_sent": bytes_out,
            "packet_rate_download": round(rates.packets_in),
            "packet_rate_upload": round(rates.packets_out),
            "bit_rate_download": round(rates.bits_in),
            "bit_rate_upload": round(rates.bits_out),
            "loss_rate_download": _mean([e.reports.upstream_loss for e in endpoints]),
            "loss_rate_upload": _mean([e.reports.downstream_loss for e in endpoints]),
            "rtt_aggregate": round(_mean(rtts) * 1000, 1),
            "stress_level": round(min(1.0, stress), 3),
            "nack_retransmissions": sum(
                r.stats.resent for c in self.conferences.values()
                for r in c.repair.responders.values()),
            "dropped_unannounced": sum(e.stats.dropped_unannounced for e in endpoints),
            "dropped_srtp": self.transport.stats.dropped_srtp,
            "dropped_stun": self.transport.stats.dropped_stun,
            "dropped_unknown": self.transport.stats.dropped_unknown,
            "graceful_shutdown": self.draining,
            "version": VERSION,
        }


def _mean(values: list[float]) -> float:
    return round(sum(values) / len(values), 4) if values else 0.0
