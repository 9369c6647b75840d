"""TURN allocations (RFC 8656, RFC 6156, RFC 6062), sans-IO.

:class:`TurnCore` turns what clients and peers send into :class:`Output`. The glue feeds it
what arrives on the listening ports (:meth:`TurnCore.client_datagram`, one STUN message or
ChannelData frame at a time, whatever the transport) and on UDP relay ports
(:meth:`TurnCore.peer_datagram`), tells it about TCP and TLS clients
(:meth:`TurnCore.client_connected`, :meth:`TurnCore.client_gone`) and about TCP peers of
RFC 6062 allocations, opens relay ports through the ``open_relay`` callback, and calls
:meth:`TurnCore.expire` every second or so::

    for out in core.client_datagram(frame, client, now):
        glue.perform(out)  # send to a client or a peer, connect, splice or close

A client's allocation is keyed by its :data:`Client` key, which the glue makes one per
5-tuple (RFC 8656 §2): a UDP client's (host, port), or a :class:`StreamClient`, which also
names the TCP or TLS connection's server address and never equals a UDP client's key.
Malformed input is dropped and counted in :attr:`TurnCore.stats`; every error answer is
counted by reason.

The relay fast paths do the same without Output objects: :meth:`TurnCore.relay_client_datagram`
gives data for a peer as a :data:`PeerHop` tuple, :meth:`TurnCore.peer_to_client` what to send
to the client as a :data:`ClientHop`.
"""

from __future__ import annotations

import math
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

from vw.common.networks import reflexive
from vw.common.ratelimit import TokenBucket
from vw.stun import (
    CHANNEL_MAX,
    FAMILY_IPV4,
    FAMILY_IPV6,
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    Attribute,
    AttributeFormatError,
    AttributeOverrunError,
    ChannelData,
    ChannelNumber,
    ConnectionId,
    Data,
    DontFragment,
    ErrorCode,
    EvenPort,
    Fingerprint,
    Lifetime,
    Message,
    MessageClass,
    MessageIntegrity,
    MessageIntegritySha256,
    Method,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    Software,
    StunError,
    UnknownAttributes,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    check_fingerprint,
    is_channel_data,
    is_channel_number,
)
from vw.stun.constants import HEADER_LENGTH, TRANSACTION_ID_LENGTH
from vw.stun.wire import check_header, decode_type
from vw.turn.auth import Authenticator, AuthResult
from vw.turn.fastpath import data_indication, parse_send
from vw.turn.peers import PeerPolicy

Address = tuple[str, int]


class StreamClient(NamedTuple):
    """The key of a client on a TCP or TLS connection: its address and the server address it
    reached. Unlike a bare (host, port), it tells the transports and listeners apart."""

    host: str
    port: int
    server: Address


#: A client's key: (host, port) over UDP, a :class:`StreamClient` over TCP and TLS.
Client = Address | StreamClient

#: Seconds a reserved port (EVEN-PORT with R) waits for its RESERVATION-TOKEN (RFC 8656 §7.2).
RESERVATION_LIFETIME = 30
#: Seconds a peer TCP connection waits for its ConnectionBind (RFC 6062 §5.3, §5.4).
CONNECTION_BIND_TIMEOUT = 30
#: Bursts of the per-source and per-allocation rates: this many seconds' worth.
BURST_SECONDS = 4


@dataclass(frozen=True, slots=True)
class RelayRequest:
    """What an Allocate asks of the relay port: ``transport`` UDP or TCP, its address
    ``family``, an ``even`` port and the next one reserved (``reserve_next``), the
    ``dont_fragment`` bit, or the port reserved earlier (``reserved``)."""

    client: Client
    transport: int = TRANSPORT_UDP
    family: int = FAMILY_IPV4
    even: bool = False
    reserve_next: bool = False
    dont_fragment: bool = False
    reserved: Address | None = None


@dataclass(frozen=True, slots=True)
class RelayGrant:
    """An open relay port, and the next one when it was reserved."""

    relay: Address
    reserved: Address | None = None


#: The relay fast paths' answers: (relay port, data, peer) to send from a relay port, and
#: (data, client) to send to a client.
PeerHop = tuple[Address, bytes, Address]
ClientHop = tuple[bytes, Client]

#: Opens a relay port; None when none is free (answered 508).
OpenRelay = Callable[[RelayRequest], RelayGrant | None]

OutputKind = Literal["client", "peer", "connect", "splice", "close"]


class Output(NamedTuple):
    """What the glue does (a named tuple: cheap to make on the relay path).

    - ``"client"``: send ``data`` to the client at ``address`` (from the listening port, or on
      its TCP/TLS connection);
    - ``"peer"``: send the datagram ``data`` to ``address`` from the UDP relay port ``relay``;
    - ``"connect"``: open TCP peer connection ``connection`` from ``relay`` to ``address``,
      then report :meth:`TurnCore.peer_connected` or :meth:`TurnCore.peer_connect_failed`;
    - ``"splice"``: from now on, pipe the client data connection at ``address`` and peer
      connection ``connection`` into each other;
    - ``"close"``: close peer connection ``connection``, or else the relay port ``relay``.
    """

    kind: OutputKind
    data: bytes
    address: Client
    relay: Address | None = None
    connection: int | None = None


@dataclass
class Stats:
    """Counters: datagrams that did not parse, well-formed ones neither answered nor relayed,
    datagrams relayed each way and their application bytes, and refusals by reason (error
    codes, ``"rate"`` for requests over the per-source rate, ``"amplification"`` for answers
    that would have been larger than their unauthenticated request, ``"bandwidth"`` for data
    over an allocation's cap, ``"proxy_malformed"`` and ``"proxy_timeout"`` for TCP and TLS
    connections of trusted proxies closed for their PROXY header)."""

    malformed: int = 0
    dropped: int = 0
    to_peers: int = 0
    to_clients: int = 0
    bytes_to_peers: int = 0
    bytes_to_clients: int = 0
    refusals: Counter[str] = field(default_factory=Counter)


@dataclass
class Allocation:
    """One client's relay: permissions by peer IP and channels, each with its expiry time."""

    client: Client
    relay: Address
    username: str
    expires: float
    response: Message  # the Allocate success, answered again to a retransmitted request
    transport: int = TRANSPORT_UDP
    bandwidth: TokenBucket | None = None
    started: float = 0.0
    permissions: dict[str, float] = field(default_factory=dict)
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)
    #: RFC 6062 peer connections by peer address.
    connections: dict[Address, PeerConnection] = field(default_factory=dict)

    def permits(self, ip: str, now: float) -> bool:
        """Whether a live permission covers ``ip``."""
        expiry = self.permissions.get(ip)
        return expiry is not None and expiry > now

    def prune(self, now: float) -> None:
        """Drop expired permissions and channels."""
        self.permissions = {ip: t for ip, t in self.permissions.items() if t > now}
        for channel, (peer, expiry) in list(self.channels.items()):
            if expiry <= now:
                del self.channels[channel]
                del self.peer_channels[peer]


@dataclass
class PeerConnection:
    """A TCP connection between a TCP allocation's relay and a peer (RFC 6062): being
    opened for a Connect (``request`` set), waiting for the client's ConnectionBind until
    ``bind_by``, or spliced to the client data connection ``data_client``."""

    id: int
    allocation: Allocation
    peer: Address
    bind_by: float
    request: Message | None = None
    key: bytes | None = None
    sha256: bool = False
    data_client: Client | None = None


@dataclass
class _Reservation:
    relay: Address
    expires: float


class _Refusal(Exception):
    """An error response to a request that passed authentication."""

    def __init__(self, code: int, *attributes: Attribute) -> None:
        super().__init__(code)
        self.code = code
        self.attributes = attributes


def _family(host: str) -> int:
    return FAMILY_IPV6 if ":" in host else FAMILY_IPV4


@dataclass
class TurnCore:
    """The TURN server state: allocations by client and by relay address."""

    auth: Authenticator
    peers: PeerPolicy
    open_relay: OpenRelay
    max_allocations_per_user: int = 10
    max_allocations: int = 1000
    default_lifetime: int = 600
    max_lifetime: int = 3600
    permission_lifetime: int = 300
    channel_lifetime: int = 600
    #: Address families relays can have (RFC 6156); others are answered 440.
    relay_families: frozenset[int] = frozenset({FAMILY_IPV4})
    #: RFC 6062 TCP allocations; without them a TCP REQUESTED-TRANSPORT is answered 442.
    tcp_relays: bool = True
    #: The highest channel number bound: 0x4FFF (RFC 8656) or 0x7FFF (RFC 5766, as coturn).
    last_channel: int = CHANNEL_MAX
    #: Over UDP, an answer to a request without valid credentials may be at most this many
    #: times the request's size, as QUIC limits servers before address validation (RFC 9000
    #: §8.1): a browser's first Allocate is 28 bytes, its 401 challenge 76 plus the realm.
    #: TCP and TLS clients proved their address in the handshake.
    amplification_limit: float = 3.0
    #: Requests without valid credentials a source IP may send per second.
    unauthenticated_rate: float = 20.0
    #: Bytes per second an allocation may relay, both directions together (0: no cap).
    max_bandwidth: int = 0
    #: Peer addresses one allocation may hold permissions for; more are answered 508.
    max_permissions: int = 64
    #: A SOFTWARE attribute in every answer (RFC 8489 §14.14); empty: none, revealing nothing.
    software: str = ""
    #: The host clients are told for relays opened on another (a one-to-one NAT's public
    #: address for the private one, or for the wildcard), by the host they are opened on.
    relay_announced: Mapping[str, str] = field(default_factory=dict)
    #: Shutting down: new allocations are refused (403), the others carry on.
    draining: bool = False
    #: Called with a relay address when its allocation ended or was shortened: routes
    #: (:meth:`channel_route`, :meth:`peer_route`) given out for it no longer hold.
    routes_changed: Callable[[Address], None] = field(default=lambda relay: None, repr=False)
    #: Told of each allocation made (``"allocated"``) and ended: ``"deleted"`` (a Refresh
    #: with LIFETIME 0), ``"expired"`` or ``"connection closed"`` (its TCP or TLS one).
    allocation_event: Callable[[Allocation, str], None] | None = field(default=None,
                                                                      repr=False)
    stats: Stats = field(default_factory=Stats)
    _by_client: dict[Client, Allocation] = field(default_factory=dict, init=False, repr=False)
    _by_relay: dict[Address, Allocation] = field(default_factory=dict, init=False, repr=False)
    _streams: set[Client] = field(default_factory=set, init=False, repr=False)
    _per_user: Counter[str] = field(default_factory=Counter, init=False, repr=False)
    _sources: dict[str, TokenBucket] = field(default_factory=dict, init=False, repr=False)
    _reservations: dict[bytes, _Reservation] = field(default_factory=dict, init=False,
                                                     repr=False)
    _connections: dict[int, PeerConnection] = field(default_factory=dict, init=False,
                                                    repr=False)
    _closing: list[Output] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.default_lifetime <= self.max_lifetime:
            raise ValueError(
                f"lifetimes: default {self.default_lifetime} not in 1..max {self.max_lifetime}"
            )
        if self.permission_lifetime <= 0 or self.channel_lifetime <= 0:
            raise ValueError("permission and channel lifetimes must be positive")
        if self.amplification_limit <= 0 or self.unauthenticated_rate <= 0:
            raise ValueError("the amplification limit and unauthenticated rate must be positive")

    @property
    def allocations(self) -> Mapping[Client, Allocation]:
        """Allocations by client address (expired ones linger until :meth:`expire`)."""
        return self._by_client

    @property
    def connections(self) -> Mapping[int, PeerConnection]:
        """RFC 6062 peer connections by connection id."""
        return self._connections

    # --- from clients --------------------------------------------------------------------

    def client_connected(self, client: Client) -> None:
        """A client connected over TCP or TLS: its address is proven, and it may ask for TCP
        allocations or bind peer connections."""
        self._streams.add(client)

    def client_gone(self, client: Client) -> list[Output]:
        """The client's TCP or TLS connection closed: its allocation goes with it (RFC 8656
        §3.7), and so does a peer connection spliced to it."""
        self._streams.discard(client)
        allocation = self._by_client.get(client)
        if allocation is not None:
            self._delete(allocation, "connection closed")
        for connection in list(self._connections.values()):
            if connection.data_client == client:
                self._drop_connection(connection)
        closing, self._closing = self._closing, []
        return closing

    def client_datagram(self, data: bytes, client: Client, now: float) -> list[Output]:
        """Handle one STUN message or ChannelData frame from ``client``."""
        result = self.relay_client_datagram(data, client, now)
        if type(result) is tuple:
            return [Output("peer", result[1], result[2], result[0])]
        return result  # type: ignore[return-value]

    def relay_client_datagram(self, data: bytes, client: Client,
                              now: float) -> PeerHop | list[Output]:
        """:meth:`client_datagram` for the relay fast path: data for a peer (ChannelData, a
        Send indication) comes back as a :data:`PeerHop` rather than in an Output list."""
        if is_channel_data(data):
            return self._client_channel_data(data, client, now)
        send = parse_send(data)
        if send is not None:
            return self._send(client, send[0], send[1], now)
        try:
            message = Message.parse(data)
        except AttributeOverrunError:
            return self._malformed()
        except AttributeFormatError:
            return self._bad_attribute(data, client, now)
        except ValueError:
            return self._malformed()
        if message.get(Fingerprint) is not None and not check_fingerprint(message):
            return self._malformed()
        if message.message_class is MessageClass.INDICATION:
            return self._indication(message, client, now)
        if message.message_class is not MessageClass.REQUEST:
            return self._drop()
        return self._request(message, data, client, now)

    def _request(self, request: Message, raw: bytes, client: Client,
                 now: float) -> list[Output]:
        method = request.method
        handler = self._HANDLERS.get(method)
        fingerprinted = request.get(Fingerprint) is not None
        if handler is None:
            if not self._admit_unauthenticated(client, now):
                return []
            if method != Method.BINDING:
                reply = request.error_response(400, reason="")
            elif unknown := request.unknown_comprehension_required():
                reply = request.error_response(420, UnknownAttributes(tuple(unknown)), reason="")
            else:
                reply = request.success_response(XorMappedAddress(*reflexive(client)))
            return self._unauthenticated_answer(reply, raw, client, fingerprint=fingerprinted)
        signed = request.get(MessageIntegrity) or request.get(MessageIntegritySha256)
        if signed is None and not self._admit_unauthenticated(client, now):
            return []
        result = self.auth.verify(request, raw, now)
        if result.code is not None:
            if signed is not None and not self._admit_unauthenticated(client, now):
                return []
            reply = request.error_response(result.code, *result.attributes, reason="")
            return self._unauthenticated_answer(reply, raw, client, fingerprint=fingerprinted)
        extra: list[Output] = []
        try:
            if unknown := request.unknown_comprehension_required():
                raise _Refusal(420, UnknownAttributes(tuple(unknown)))
            answer = handler(self, request, client, result, now)
            if answer is None:  # a Connect: answered once the peer connection is up or failed
                return self._take_closing()
            reply, extra = answer if isinstance(answer, tuple) else (answer, [])
        except _Refusal as refusal:
            self.stats.refusals[str(refusal.code)] += 1
            reply = request.error_response(refusal.code, *refusal.attributes)
        data = self._signed(reply, result.key, result.sha256)
        return [Output("client", data, client), *extra, *self._take_closing()]

    def _bad_attribute(self, data: bytes, client: Client, now: float) -> list[Output]:
        """A request with an attribute that does not decode (a 600-byte USERNAME...): 400
        (RFC 8489 §6.3.1), as an unauthenticated answer."""
        message_type, transaction_id = check_header(data)
        method, message_class = decode_type(message_type)
        if message_class != MessageClass.REQUEST or not self._admit_unauthenticated(client, now):
            return self._malformed()
        reply = Message(method, MessageClass.ERROR, transaction_id, [ErrorCode(400, "")])
        return self._unauthenticated_answer(reply, data, client, fingerprint=False)

    def _signed(self, reply: Message, key: bytes | None, sha256: bool) -> bytes:
        """An answer with integrity under the request's key, and FINGERPRINT."""
        if self.software:
            reply = self._with_software(reply)
        return reply.bytes(key, sha256=sha256, fingerprint=True)

    def _with_software(self, reply: Message) -> Message:
        return Message(reply.method, reply.message_class, reply.transaction_id,
                       [*reply.attributes, Software(self.software)])

    def challenge(self, now: float) -> tuple[bytes, float, float]:
        """The 401 that every Allocate request without integrity gets while its nonce is
        the one issued, and from when until when that is: the 401's attributes after the
        header (a FINGERPRINT follows when the request had one). The compiled relay answers
        with it (see :meth:`challenge_admitted`)."""
        request = Message(Method.ALLOCATE, MessageClass.REQUEST, bytes(TRANSACTION_ID_LENGTH))
        attributes = self.auth.challenge(401, now).attributes
        reply = self._unauthenticated_bytes(
            request.error_response(401, *attributes, reason=""), fingerprint=False)
        return (reply[HEADER_LENGTH:], *self.auth.nonces.issue_span(now))

    def challenge_admitted(self, client: Client, now: float) -> bool:
        """Whether the compiled relay may answer an Allocate without integrity from
        ``client`` with :meth:`challenge`'s 401: yes within the source's budget of
        unauthenticated requests, and the 401 is counted."""
        if not self._admit_unauthenticated(client, now):
            return False
        self.stats.refusals["401"] += 1
        return True

    def _admit_unauthenticated(self, client: Client, now: float) -> bool:
        """Take one request from the source's budget of requests without valid credentials."""
        bucket = self._sources.get(client[0])
        if bucket is None:
            rate = self.unauthenticated_rate
            bucket = self._sources[client[0]] = TokenBucket(rate, rate * BURST_SECONDS, now)
        if bucket.take(1, now):
            return True
        self.stats.refusals["rate"] += 1
        return False

    def _unauthenticated_answer(self, reply: Message, raw: bytes, client: Client, *,
                                fingerprint: bool) -> list[Output]:
        """Answer without integrity, reason phrase or (unless the request had one)
        FINGERPRINT; nothing over UDP when the answer would be more than
        ``amplification_limit`` times the request."""
        data = self._unauthenticated_bytes(reply, fingerprint=fingerprint)
        if client not in self._streams and len(data) > self.amplification_limit * len(raw):
            self.stats.refusals["amplification"] += 1
            return []
        code = reply.get(ErrorCode)
        if code is not None:
            self.stats.refusals[str(code.code)] += 1
        return [Output("client", data, client)]

    def _unauthenticated_bytes(self, reply: Message, *, fingerprint: bool) -> bytes:
        if self.software:
            reply = self._with_software(reply)
        return reply.bytes(fingerprint=fingerprint)

    def _allocate(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> Message:
        username = result.username or ""
        existing = self._live(client, now)
        if existing is not None:
            retransmitted = existing.response.transaction_id == request.transaction_id
            if retransmitted and existing.username == username:
                return existing.response
            raise _Refusal(437)
        if self.draining:
            raise _Refusal(403)
        relay_request = self._relay_request(request, client, now)
        owned = self._per_user[username]
        if len(self._by_client) >= self.max_allocations or owned >= self.max_allocations_per_user:
            raise _Refusal(486)
        grant = self.open_relay(relay_request)
        if grant is None:
            raise _Refusal(508)
        if grant.relay in self._by_relay:
            raise ValueError(f"open_relay gave {grant.relay}, which an allocation already uses")
        used = request.get(ReservationToken)
        if used is not None:
            del self._reservations[used.value]
        lifetime = self._lifetime(request, zero_deletes=False)
        host, port = grant.relay
        attributes: list[Attribute] = [
            XorRelayedAddress(self.relay_announced.get(host, host), port), Lifetime(lifetime)]
        if grant.reserved is not None:
            reservation = secrets.token_bytes(8)
            self._reservations[reservation] = _Reservation(grant.reserved,
                                                           now + RESERVATION_LIFETIME)
            attributes.append(ReservationToken(reservation))
        response = request.success_response(*attributes, XorMappedAddress(*reflexive(client)))
        bandwidth = None
        if self.max_bandwidth:
            rate = self.max_bandwidth
            bandwidth = TokenBucket(rate, rate * BURST_SECONDS, now)
        allocation = Allocation(client, grant.relay, username, now + lifetime, response,
                                relay_request.transport, bandwidth, now)
        self._by_client[client] = self._by_relay[grant.relay] = allocation
        self._per_user[username] += 1
        if self.allocation_event is not None:
            self.allocation_event(allocation, "allocated")
        return response

    def _relay_request(self, request: Message, client: Client, now: float) -> RelayRequest:
        """Check an Allocate's REQUESTED-TRANSPORT, REQUESTED-ADDRESS-FAMILY, EVEN-PORT,
        RESERVATION-TOKEN and DONT-FRAGMENT (RFC 8656 §7.2, RFC 6156, RFC 6062 §5.1)."""
        transport = request.get(RequestedTransport)
        if transport is None:
            raise _Refusal(400)
        family_attribute = request.get(RequestedAddressFamily)
        even, token = request.get(EvenPort), request.get(ReservationToken)
        dont_fragment = request.get(DontFragment) is not None
        if transport.protocol == TRANSPORT_TCP:
            if not self.tcp_relays:
                raise _Refusal(442)
            if client not in self._streams:
                raise _Refusal(400)  # a TCP allocation over UDP (RFC 6062 §5.1)
            if even is not None or token is not None or dont_fragment:
                raise _Refusal(400)
        elif transport.protocol != TRANSPORT_UDP:
            raise _Refusal(442)
        if token is not None:
            if even is not None or family_attribute is not None:
                raise _Refusal(400)
            reservation = self._reservations.get(token.value)
            if reservation is None or reservation.expires <= now:
                raise _Refusal(508)
            return RelayRequest(client, family=_family(reservation.relay[0]),
                                dont_fragment=dont_fragment, reserved=reservation.relay)
        family = FAMILY_IPV4 if family_attribute is None else family_attribute.family
        if family not in self.relay_families:
            raise _Refusal(440)
        return RelayRequest(client, transport.protocol, family, even is not None,
                            even is not None and even.reserve, dont_fragment)

    def _refresh(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        family = request.get(RequestedAddressFamily)
        if family is not None and family.family != _family(allocation.relay[0]):
            raise _Refusal(443)
        lifetime = self._lifetime(request, zero_deletes=True)
        if lifetime == 0:
            self._delete(allocation, "deleted")
        else:
            allocation.expires = now + lifetime
            self.routes_changed(allocation.relay)
        return request.success_response(Lifetime(lifetime))

    def _create_permission(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        peers = request.get_all(XorPeerAddress)
        if not peers:
            raise _Refusal(400)
        for peer in peers:
            self._check_peer(allocation, peer.host)
        self._check_permission_room(allocation, {peer.host for peer in peers})
        for peer in peers:
            allocation.permissions[peer.host] = now + self.permission_lifetime
        return request.success_response()

    def _channel_bind(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        number, peer = request.get(ChannelNumber), request.get(XorPeerAddress)
        if number is None or peer is None or allocation.transport != TRANSPORT_UDP:
            raise _Refusal(400)
        if not is_channel_number(number.value, self.last_channel):
            raise _Refusal(400)
        self._check_peer(allocation, peer.host)
        channel, address = number.value, peer.address
        bound = allocation.channels.get(channel)
        if bound is not None and bound[0] != address:
            raise _Refusal(400)
        if allocation.peer_channels.get(address, channel) != channel:
            raise _Refusal(400)
        self._check_permission_room(allocation, {peer.host})
        allocation.channels[channel] = (address, now + self.channel_lifetime)
        allocation.peer_channels[address] = channel
        allocation.permissions[peer.host] = now + self.permission_lifetime
        if bound is None or bound[1] <= now:  # the peer's data now goes as ChannelData
            self.routes_changed(allocation.relay)
        return request.success_response()

    def _connect(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> list[Output] | None:
        """RFC 6062 §5.2: open a TCP connection to the peer, answered when it is up."""
        allocation = self._owned(client, result, now)
        peer = request.get(XorPeerAddress)
        if peer is None or allocation.transport != TRANSPORT_TCP:
            raise _Refusal(400)
        self._check_peer(allocation, peer.host)
        if not allocation.permits(peer.host, now):
            raise _Refusal(403)
        if peer.address in allocation.connections:
            raise _Refusal(446)
        connection = self._new_connection(allocation, peer.address, now)
        connection.request, connection.key, connection.sha256 = request, result.key, result.sha256
        self._closing.append(Output("connect", b"", peer.address, allocation.relay,
                                    connection.id))
        return None

    def _connection_bind(
        self, request: Message, client: Client, result: AuthResult, now: float
    ) -> tuple[Message, list[Output]]:
        """RFC 6062 §5.4: the client's new data connection takes over a peer connection."""
        number = request.get(ConnectionId)
        connection = None if number is None else self._connections.get(number.value)
        if (
            connection is None
            or client not in self._streams
            or client in self._by_client
            or connection.request is not None
            or connection.data_client is not None
            or connection.bind_by <= now
        ):
            raise _Refusal(400)
        if connection.allocation.username != result.username:
            raise _Refusal(441)
        connection.data_client = client
        return request.success_response(), [Output("splice", b"", client,
                                                   connection=connection.id)]

    _HANDLERS = {
        Method.ALLOCATE: _allocate,
        Method.REFRESH: _refresh,
        Method.CREATE_PERMISSION: _create_permission,
        Method.CHANNEL_BIND: _channel_bind,
        Method.CONNECT: _connect,
        Method.CONNECTION_BIND: _connection_bind,
    }

    def _indication(self, message: Message, client: Client,
                    now: float) -> PeerHop | list[Output]:
        peer, data = message.get(XorPeerAddress), message.get(Data)
        usable = (
            message.method == Method.SEND
            and peer is not None
            and data is not None
            and not message.unknown_comprehension_required()
        )
        if not usable:
            self._live(client, now)  # an expired allocation goes, as for any indication
            return self._drop()
        return self._send(client, peer.address, data.value, now)  # type: ignore[union-attr]

    def _send(self, client: Client, peer: Address, data: bytes,
              now: float) -> PeerHop | list[Output]:
        """A Send indication's ``data`` for ``peer``."""
        allocation = self._live(client, now)
        if (
            allocation is None
            or allocation.transport != TRANSPORT_UDP
            or not allocation.permits(peer[0], now)
        ):
            return self._drop()
        return self._to_peer(allocation, data, peer, now) or []

    def _client_channel_data(self, data: bytes, client: Client,
                             now: float) -> PeerHop | list[Output]:
        try:
            frame = ChannelData.parse(data)
        except StunError:
            return self._malformed()
        allocation = self._live(client, now)
        bound = allocation.channels.get(frame.channel) if allocation is not None else None
        if allocation is None or bound is None or bound[1] <= now:
            return self._drop()
        peer = bound[0]
        if not allocation.permits(peer[0], now):
            return self._drop()
        return self._to_peer(allocation, frame.data, peer, now) or []

    def _to_peer(self, allocation: Allocation, data: bytes, peer: Address,
                 now: float) -> PeerHop | None:
        if not self._within_bandwidth(allocation, len(data), now):
            return None
        stats = self.stats
        stats.to_peers += 1
        stats.bytes_to_peers += len(data)
        return allocation.relay, data, peer

    def _within_bandwidth(self, allocation: Allocation, size: int, now: float) -> bool:
        if allocation.bandwidth is None or allocation.bandwidth.take(size, now):
            return True
        self.stats.refusals["bandwidth"] += 1
        return False

    # --- from peers ----------------------------------------------------------------------

    def peer_datagram(self, relay: Address, data: bytes, peer: Address, now: float) -> list[Output]:
        """Handle a datagram from ``peer`` on the UDP relay port ``relay``."""
        hop = self.peer_to_client(relay, data, peer, now)
        return [] if hop is None else [Output("client", hop[0], hop[1])]

    def peer_to_client(self, relay: Address, data: bytes, peer: Address,
                       now: float) -> ClientHop | None:
        """The relay fast path for a datagram from ``peer`` on the UDP relay port ``relay``:
        the ChannelData frame or Data indication for the client and its address, or None
        (dropped or over the bandwidth cap, counted)."""
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.expires <= now or not allocation.permits(peer[0], now):
            self.stats.dropped += 1
            return None
        if not self._within_bandwidth(allocation, len(data), now):
            return None
        channel = allocation.peer_channels.get(peer)
        try:
            if channel is not None and allocation.channels[channel][1] > now:
                out = ChannelData(channel, data).bytes()
            else:
                out = data_indication(peer, data)
        except ValueError:  # too big to wrap, or a peer address that is no IP address
            self.stats.dropped += 1
            return None
        stats = self.stats
        stats.to_clients += 1
        stats.bytes_to_clients += len(data)
        return out, allocation.client

    # --- routes: what the relay fast paths may repeat without asking -------------------------

    def channel_route(self, client: Client, channel: int,
                      now: float) -> tuple[Address, float] | None:
        """The peer ChannelData from ``client`` on ``channel`` goes to, and until when that
        holds unless :attr:`routes_changed` says otherwise; None if it is not relayed now or
        each datagram must be seen (a bandwidth cap)."""
        allocation = self._by_client.get(client)
        if allocation is None or allocation.bandwidth is not None:
            return None
        bound = allocation.channels.get(channel)
        if bound is None:
            return None
        peer = bound[0]
        until = self._route_until(allocation, peer, bound, now)
        return None if until is None else (peer, until)

    def send_route(self, client: Client, peer: Address, now: float) -> float | None:
        """Until when Send indications from ``client`` to ``peer`` are relayed, as
        :meth:`channel_route`."""
        allocation = self._by_client.get(client)
        if (allocation is None or allocation.bandwidth is not None
                or allocation.transport != TRANSPORT_UDP):
            return None
        return self._route_until(allocation, peer, None, now)

    def peer_route(self, relay: Address, peer: Address,
                   now: float) -> tuple[Client, int, float] | None:
        """The client and channel data from ``peer`` on the UDP relay port ``relay`` goes to as
        ChannelData (channel 0: in Data indications, while no channel is bound to the peer),
        and until when, as :meth:`channel_route`. Binding a channel changes the route."""
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.bandwidth is not None:
            return None
        channel = allocation.peer_channels.get(peer)
        bound = None if channel is None else allocation.channels[channel]
        if bound is None or bound[1] <= now:
            channel, bound = 0, None
        until = self._route_until(allocation, peer, bound, now)
        return None if until is None else (allocation.client, channel, until)

    @staticmethod
    def _route_until(allocation: Allocation, peer: Address, bound: tuple[Address, float] | None,
                     now: float) -> float | None:
        """When the first of the allocation, the ``bound`` channel (if any) and the peer's
        permission expires, or None if one has."""
        permission = allocation.permissions.get(peer[0])
        if permission is None:
            return None
        until = min(allocation.expires, permission, bound[1] if bound is not None else math.inf)
        return until if until > now else None

    def peer_connected(self, connection_id: int, now: float) -> list[Output]:
        """The TCP connection a Connect asked for is up: answer the Connect with its id."""
        connection = self._connections.get(connection_id)
        if connection is None or connection.request is None:
            return []
        request, connection.request = connection.request, None
        connection.bind_by = now + CONNECTION_BIND_TIMEOUT
        reply = request.success_response(ConnectionId(connection.id))
        data = self._signed(reply, connection.key, connection.sha256)
        return [Output("client", data, connection.allocation.client)]

    def peer_connect_failed(self, connection_id: int) -> list[Output]:
        """The TCP connection a Connect asked for could not be made: 447."""
        connection = self._connections.pop(connection_id, None)
        if connection is None or connection.request is None:
            return []
        del connection.allocation.connections[connection.peer]
        self.stats.refusals["447"] += 1
        reply = connection.request.error_response(447)
        data = self._signed(reply, connection.key, connection.sha256)
        return [Output("client", data, connection.allocation.client)]

    def peer_connection_arrived(self, relay: Address, peer: Address,
                                now: float) -> tuple[int | None, list[Output]]:
        """A peer connected to a TCP relay (RFC 6062 §5.3): its connection id and the
        ConnectionAttempt for the client, or None (close it) without a permission."""
        allocation = self._by_relay.get(relay)
        if (
            allocation is None
            or allocation.expires <= now
            or allocation.transport != TRANSPORT_TCP
            or not allocation.permits(peer[0], now)
            or peer in allocation.connections
        ):
            self.stats.dropped += 1
            return None, []
        connection = self._new_connection(allocation, peer, now)
        attempt = Message(Method.CONNECTION_ATTEMPT, MessageClass.INDICATION,
                          attributes=[XorPeerAddress(*peer), ConnectionId(connection.id)])
        return connection.id, [Output("client", attempt.bytes(fingerprint=True),
                                      allocation.client)]

    def peer_connection_closed(self, connection_id: int) -> None:
        """A peer TCP connection closed: forget it."""
        connection = self._connections.pop(connection_id, None)
        if connection is not None:
            connection.allocation.connections.pop(connection.peer, None)

    def _new_connection(self, allocation: Allocation, peer: Address,
                        now: float) -> PeerConnection:
        while (connection_id := secrets.randbits(32)) in self._connections:
            pass
        connection = PeerConnection(connection_id, allocation, peer,
                                    now + CONNECTION_BIND_TIMEOUT)
        self._connections[connection_id] = allocation.connections[peer] = connection
        return connection

    def _drop_connection(self, connection: PeerConnection) -> None:
        self.peer_connection_closed(connection.id)
        self._closing.append(Output("close", b"", connection.peer, connection.allocation.relay,
                                    connection.id))

    # --- housekeeping --------------------------------------------------------------------

    def expire(self, now: float) -> list[Output]:
        """Remove allocations past their lifetime, stale permissions, channels, reservations
        and unbound peer connections; return what to close, including everything deleted
        since the last call."""
        for allocation in list(self._by_client.values()):
            if allocation.expires <= now:
                self._delete(allocation, "expired")
            else:
                allocation.prune(now)
        for token, reservation in list(self._reservations.items()):
            if reservation.expires <= now:
                del self._reservations[token]
                self._closing.append(Output("close", b"", reservation.relay, reservation.relay))
        for connection in list(self._connections.values()):
            unbound = connection.data_client is None and connection.request is None
            if unbound and connection.bind_by <= now:
                self._drop_connection(connection)
        for source, bucket in list(self._sources.items()):
            if bucket.full(now):
                del self._sources[source]
        return self._take_closing()

    def _take_closing(self) -> list[Output]:
        closing, self._closing = self._closing, []
        return closing

    def _live(self, client: Client, now: float) -> Allocation | None:
        allocation = self._by_client.get(client)
        if allocation is not None and allocation.expires <= now:
            self._delete(allocation, "expired")
            return None
        return allocation

    def _owned(self, client: Client, result: AuthResult, now: float) -> Allocation:
        allocation = self._live(client, now)
        if allocation is None:
            raise _Refusal(437)
        if allocation.username != result.username:
            raise _Refusal(441)
        return allocation

    def _delete(self, allocation: Allocation, reason: str) -> None:
        self.routes_changed(allocation.relay)
        del self._by_client[allocation.client]
        del self._by_relay[allocation.relay]
        self._per_user[allocation.username] -= 1
        if not self._per_user[allocation.username]:
            del self._per_user[allocation.username]
        for connection in list(allocation.connections.values()):
            self._drop_connection(connection)
        self._closing.append(Output("close", b"", allocation.relay, allocation.relay))
        if self.allocation_event is not None:
            self.allocation_event(allocation, reason)

    def _check_peer(self, allocation: Allocation, host: str) -> None:
        if not self.peers.permitted(host):
            raise _Refusal(403)
        if _family(host) != _family(allocation.relay[0]):
            raise _Refusal(443)

    def _check_permission_room(self, allocation: Allocation, hosts: set[str]) -> None:
        """508 when permissions for ``hosts`` would pass ``max_permissions``."""
        if len(allocation.permissions.keys() | hosts) > self.max_permissions:
            raise _Refusal(508)

    def _lifetime(self, request: Message, *, zero_deletes: bool) -> int:
        """The desired lifetime (RFC 8656 §7.2, §7.3): the requested one capped at the maximum
        and raised to the default; 0 asks a Refresh to delete."""
        requested = request.get(Lifetime)
        if requested is None:
            return self.default_lifetime
        if requested.value == 0 and zero_deletes:
            return 0
        return max(self.default_lifetime, min(requested.value, self.max_lifetime))

    def _malformed(self) -> list[Output]:
        self.stats.malformed += 1
        return []

    def _drop(self) -> list[Output]:
        self.stats.dropped += 1
        return []
