"""The shared UDP port: demultiplexing (RFC 7983) to endpoints, and timers (sans-IO)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from vw.bridge.conference import Conference, Endpoint
from vw.bridge.ice import Address
from vw.rtp.certificate import DtlsCertificate
from vw.rtp.srtp import SrtpError
from vw.stun import Message, MessageClass, StunError, Username

#: Larger datagrams are dropped unread.
MAX_DATAGRAM = 1500


@dataclass
class TransportStats:
    datagrams: int = 0
    dropped_unknown: int = 0
    dropped_oversized: int = 0
    dropped_stun: int = 0
    dropped_srtp: int = 0


class BridgeTransport:
    """Every endpoint of every conference behind one UDP port."""

    def __init__(self, certificate: DtlsCertificate, send: Callable[[bytes, Address], None],
                 connect_timeout: float = 60.0,
                 path_changed: Callable[[Address | None, Address | None], None] | None = None
                 ) -> None:
        self.certificate = certificate
        self.send = send
        #: Told when an address starts or stops being an endpoint's (old, new; None: none).
        self.path_changed = path_changed or (lambda old, new: None)
        #: An endpoint that has not connected this long after it was created is expired.
        self.connect_timeout = connect_timeout
        self.conferences: dict[str, Conference] = {}
        self.by_ufrag: dict[str, Endpoint] = {}
        self.by_address: dict[Address, Endpoint] = {}
        self.stats = TransportStats()
        #: Packets in, packets out, bytes in, bytes out of endpoints that have left.
        self.departed = (0, 0, 0, 0)

    # -- endpoints ---------------------------------------------------------------------

    def add_endpoint(self, conference: Conference, endpoint_id: str, now: float) -> Endpoint:
        endpoint = Endpoint(conference, endpoint_id, now)
        endpoint.ice.on_selected = lambda old, new: self._moved(endpoint, old, new)
        conference.endpoints[endpoint_id] = endpoint
        self.by_ufrag[endpoint.ice.local_ufrag] = endpoint
        return endpoint

    def remove_endpoint(self, endpoint: Endpoint, now: float) -> None:
        if endpoint.conference.endpoints.get(endpoint.id) is endpoint:
            stats = endpoint.stats
            self.departed = tuple(a + b for a, b in zip(self.departed, (
                stats.packets_in, stats.packets_out, stats.bytes_in, stats.bytes_out),
                strict=True))
        endpoint.conference.remove(endpoint, now)
        self.by_ufrag.pop(endpoint.ice.local_ufrag, None)
        if endpoint.address is not None and self.by_address.get(endpoint.address) is endpoint:
            del self.by_address[endpoint.address]
            self.path_changed(endpoint.address, None)

    def _moved(self, endpoint: Endpoint, old: Address | None, new: Address) -> None:
        if old is None or self.by_address.get(old) is not endpoint:
            old = None
        else:
            del self.by_address[old]
        self.by_address[new] = endpoint
        self.path_changed(old, new)

    # -- datagrams -----------------------------------------------------------------------

    def datagram_received(self, data: bytes, address: Address, now: float) -> None:
        self.stats.datagrams += 1
        if len(data) > MAX_DATAGRAM:
            self.stats.dropped_oversized += 1
            return
        first = data[0] if data else 255
        if first >= 128 and first <= 191:
            endpoint = self.by_address.get(address)
            if endpoint is None or endpoint.srtp is None:
                self.stats.dropped_unknown += 1
                return
            self._media(endpoint, data, now)
        elif first <= 3:
            self._stun(data, address, now)
        elif 20 <= first <= 63:
            endpoint = self.by_address.get(address)
            if endpoint is None:
                self.stats.dropped_unknown += 1
                return
            for out in endpoint.dtls_received(data, now):
                self.send(out, address)
        else:
            self.stats.dropped_unknown += 1

    def _media(self, endpoint: Endpoint, data: bytes, now: float) -> None:
        srtp = endpoint.srtp
        endpoint.stats.packets_in += 1
        endpoint.stats.bytes_in += len(data)
        try:
            if len(data) > 1 and 192 <= data[1] <= 223:
                endpoint.conference.rtcp_received(endpoint, srtp.unprotect_rtcp(data), now)
            else:
                endpoint.conference.rtp_received(endpoint, srtp.unprotect(data), now)
        except SrtpError:
            endpoint.stats.dropped_srtp += 1
            self.stats.dropped_srtp += 1

    def _stun(self, data: bytes, address: Address, now: float) -> None:
        try:
            message = Message.parse(data)
        except StunError:
            self.stats.dropped_stun += 1
            return
        if message.message_class == MessageClass.REQUEST:
            username = message.get(Username)
            endpoint = None
            if username is not None:
                endpoint = self.by_ufrag.get(username.value.split(":", 1)[0])
            if endpoint is None:
                self.stats.dropped_stun += 1
                return
            answers = endpoint.ice.request_received(message, data, address, now)
            if not answers:
                self.stats.dropped_stun += 1
            for out, target in answers:
                self.send(out, target)
            self._start_dtls(endpoint, now)
        elif message.message_class in (MessageClass.SUCCESS, MessageClass.ERROR):
            endpoint = self.by_address.get(address) or self._checked_by(message)
            if endpoint is None or not endpoint.ice.response_received(message, data, address,
                                                                      now):
                self.stats.dropped_stun += 1
                return
            self._start_dtls(endpoint, now)

    def _checked_by(self, message: Message) -> Endpoint | None:
        """The endpoint that sent the check this response answers (not yet at its address)."""
        for endpoint in self.by_ufrag.values():
            if endpoint.ice.awaits(message.transaction_id):
                return endpoint
        return None

    def _start_dtls(self, endpoint: Endpoint, now: float) -> None:
        if endpoint.address is not None:
            for out in endpoint.ensure_dtls(self.certificate, now):
                self.send(out, endpoint.address)

    # -- timers ----------------------------------------------------------------------------

    def tick(self, now: float) -> list[Endpoint]:
        """Run ICE checks, consent and DTLS retransmissions; return endpoints to expire (no
        consent, or never connected)."""
        expired = []
        for endpoint in list(self.by_ufrag.values()):
            for out, target in endpoint.ice.poll(now):
                self.send(out, target)
            never_connected = (not endpoint.connected
                               and now - endpoint.created > self.connect_timeout)
            if endpoint.ice.consent_expired(now) or never_connected:
                expired.append(endpoint)
                continue
            dtls = endpoint.dtls
            if dtls is not None and endpoint.address is not None:
                deadline = dtls.timeout()
                if deadline is not None and deadline <= now:
                    for out in dtls.handle_timeout(now):
                        self.send(out, endpoint.address)
        return expired
