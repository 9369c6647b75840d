"""The bridge: conferences on one UDP transport, the bridge channel, stats (sans-IO)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
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


class Bridge:
    """Everything one bridge process serves."""

    def __init__(self, bridge_id: str, certificate: DtlsCertificate,
                 send: Callable[[bytes, Address], None], host_candidates: list[Address],
                 websocket_base_url: str, now: Callable[[], float],
                 advertised: Address | None = None, connect_timeout: float = 60.0) -> None:
        self.id = bridge_id
        self.now = now
        self.host_candidates = host_candidates
        self.advertised = advertised
        self.websocket_base_url = websocket_base_url.rstrip("/")
        self.transport = BridgeTransport(certificate, send, connect_timeout)
        self.draining = False

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
        for endpoint in self.transport.tick(now):
            self.transport.remove_endpoint(endpoint, now)
        for conference in self.conferences.values():
            conference.dominant_speaker_changed(now)
            if conference.constraints and now - conference.allocated >= REALLOCATE_EVERY:
                conference.reallocate(now)
            for endpoint in conference.endpoints.values():
                endpoint.transport_feedback(now)

    def stats(self) -> dict[str, Any]:
        endpoints = [e for c in self.conferences.values() for e in c.endpoints.values()]
        packets_in = sum(e.stats.packets_in for e in endpoints)
        packets_out = sum(e.stats.packets_out for e in endpoints)
        return {
            "conferences": len(self.conferences),
            "endpoints": len(endpoints),
            "connected_endpoints": sum(1 for e in endpoints if e.connected),
            "packets_received": packets_in,
            "packets_sent": packets_out,
            "bytes_received": sum(e.stats.bytes_in for e in endpoints),
            "bytes_sent": sum(e.stats.bytes_out for e in endpoints),
            "dropped_unannounced": sum(e.stats.dropped_unannounced for e in endpoints),
            "dropped_srtp": self.transport.stats.dropped_srtp,
            "dropped_stun": self.transport.stats.dropped_stun,
            "dropped_unknown": self.transport.stats.dropped_unknown,
            "graceful_shutdown": self.draining,
            "version": VERSION,
        }
