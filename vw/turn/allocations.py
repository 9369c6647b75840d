"""TURN allocations over UDP (RFC 8656), sans-IO.

:class:`TurnCore` turns datagrams into :class:`Output` datagrams. The glue feeds it what
arrives on the listening port (:meth:`TurnCore.client_datagram`) and on relay ports
(:meth:`TurnCore.peer_datagram`), opens relay ports through the ``open_relay`` callback, and
calls :meth:`TurnCore.expire` every second or so, closing the relay ports it returns::

    for out in core.client_datagram(datagram, client, now):
        socket_for(out.relay).write(out.data, out.address)  # relay None: the listening port

A client's allocation is keyed by its address alone: one listening UDP port makes the server
side of the 5-tuple implicit. Malformed input is dropped and counted in :attr:`TurnCore.stats`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from vw.stun import (
    CHANNEL_MAX,
    FAMILY_IPV4,
    FAMILY_IPV6,
    TRANSPORT_UDP,
    Attribute,
    ChannelData,
    ChannelNumber,
    Data,
    Fingerprint,
    Lifetime,
    Message,
    MessageClass,
    Method,
    RequestedAddressFamily,
    RequestedTransport,
    StunError,
    UnknownAttributes,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    check_fingerprint,
    is_channel_data,
    is_channel_number,
)
from vw.turn.auth import Authenticator, AuthResult
from vw.turn.peers import PeerPolicy

Address = tuple[str, int]
#: Opens a relay port for a client; None when none is free (answered 508).
OpenRelay = Callable[[Address], Address | None]


@dataclass(frozen=True, slots=True)
class Output:
    """A datagram to send: to a ``"client"`` from the listening port (``relay`` None), or to a
    ``"peer"`` from the relay port ``relay``."""

    kind: Literal["client", "peer"]
    data: bytes
    address: Address
    relay: Address | None = None


@dataclass
class Stats:
    """Counters: datagrams that did not parse, well-formed ones neither answered nor relayed,
    and datagrams relayed each way."""

    malformed: int = 0
    dropped: int = 0
    to_peers: int = 0
    to_clients: int = 0


@dataclass
class Allocation:
    """One client's relay: permissions by peer IP and channels, each with its expiry time."""

    client: Address
    relay: Address
    username: str
    expires: float
    response: Message  # the Allocate success, answered again to a retransmitted request
    permissions: dict[str, float] = field(default_factory=dict)
    channels: dict[int, tuple[Address, float]] = field(default_factory=dict)
    peer_channels: dict[Address, int] = field(default_factory=dict)

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
    """The UDP TURN server state: allocations by client and by relay address."""

    auth: Authenticator
    peers: PeerPolicy
    open_relay: OpenRelay
    max_allocations_per_user: int = 10
    max_allocations: int = 1000
    default_lifetime: int = 600
    max_lifetime: int = 3600
    permission_lifetime: int = 300
    channel_lifetime: int = 600
    relay_family: int = FAMILY_IPV4
    #: The highest channel number bound: 0x4FFF (RFC 8656) or 0x7FFF (RFC 5766, as coturn).
    last_channel: int = CHANNEL_MAX
    stats: Stats = field(default_factory=Stats)
    _by_client: dict[Address, Allocation] = field(default_factory=dict, init=False, repr=False)
    _by_relay: dict[Address, Allocation] = field(default_factory=dict, init=False, repr=False)
    _closing: list[Address] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if not 0 < self.default_lifetime <= self.max_lifetime:
            raise ValueError(
                f"lifetimes: default {self.default_lifetime} not in 1..max {self.max_lifetime}"
            )
        if self.permission_lifetime <= 0 or self.channel_lifetime <= 0:
            raise ValueError("permission and channel lifetimes must be positive")

    @property
    def allocations(self) -> Mapping[Address, Allocation]:
        """Allocations by client address (expired ones linger until :meth:`expire`)."""
        return self._by_client

    # --- from clients --------------------------------------------------------------------

    def client_datagram(self, data: bytes, client: Address, now: float) -> list[Output]:
        """Handle a datagram from ``client`` on the listening port."""
        if is_channel_data(data):
            return self._client_channel_data(data, client, now)
        try:
            message = Message.parse(data)
        except ValueError:
            return self._malformed()
        if message.get(Fingerprint) is not None and not check_fingerprint(data):
            return self._malformed()
        if message.message_class is MessageClass.INDICATION:
            return self._indication(message, client, now)
        if message.message_class is not MessageClass.REQUEST:
            return self._drop()
        return [Output("client", self._request(message, data, client, now), client)]

    def _request(self, request: Message, raw: bytes, client: Address, now: float) -> bytes:
        method = request.method
        if method == Method.BINDING:
            if unknown := request.unknown_comprehension_required():
                reply = request.error_response(420, UnknownAttributes(tuple(unknown)))
            else:
                reply = request.success_response(XorMappedAddress(*client))
            return reply.bytes(fingerprint=True)
        handler = self._HANDLERS.get(method)
        if handler is None:
            return request.error_response(400).bytes(fingerprint=True)
        result = self.auth.verify(request, raw, now)
        if result.code is not None:
            reply = request.error_response(result.code, *result.attributes)
            return reply.bytes(fingerprint=True)
        try:
            if unknown := request.unknown_comprehension_required():
                raise _Refusal(420, UnknownAttributes(tuple(unknown)))
            reply = handler(self, request, client, result, now)
        except _Refusal as refusal:
            reply = request.error_response(refusal.code, *refusal.attributes)
        return reply.bytes(result.key, sha256=result.sha256, fingerprint=True)

    def _allocate(
        self, request: Message, client: Address, result: AuthResult, now: float
    ) -> Message:
        username = result.username or ""
        existing = self._live(client, now)
        if existing is not None:
            retransmitted = existing.response.transaction_id == request.transaction_id
            if retransmitted and existing.username == username:
                return existing.response
            raise _Refusal(437)
        transport = request.get(RequestedTransport)
        if transport is None:
            raise _Refusal(400)
        if transport.protocol != TRANSPORT_UDP:
            raise _Refusal(442)
        family = request.get(RequestedAddressFamily)
        if family is not None and family.family != self.relay_family:
            raise _Refusal(440)
        owned = sum(1 for a in self._by_client.values() if a.username == username)
        if len(self._by_client) >= self.max_allocations or owned >= self.max_allocations_per_user:
            raise _Refusal(486)
        relay = self.open_relay(client)
        if relay is None:
            raise _Refusal(508)
        if relay in self._by_relay:
            raise ValueError(f"open_relay gave {relay}, which an allocation already uses")
        lifetime = self._lifetime(request, zero_deletes=False)
        response = request.success_response(
            XorRelayedAddress(*relay), Lifetime(lifetime), XorMappedAddress(*client)
        )
        allocation = Allocation(client, relay, username, now + lifetime, response)
        self._by_client[client] = self._by_relay[relay] = allocation
        return response

    def _refresh(
        self, request: Message, client: Address, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        lifetime = self._lifetime(request, zero_deletes=True)
        if lifetime == 0:
            self._delete(allocation)
        else:
            allocation.expires = now + lifetime
        return request.success_response(Lifetime(lifetime))

    def _create_permission(
        self, request: Message, client: Address, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        peers = request.get_all(XorPeerAddress)
        if not peers:
            raise _Refusal(400)
        for peer in peers:
            self._check_peer(allocation, peer.host)
        for peer in peers:
            allocation.permissions[peer.host] = now + self.permission_lifetime
        return request.success_response()

    def _channel_bind(
        self, request: Message, client: Address, result: AuthResult, now: float
    ) -> Message:
        allocation = self._owned(client, result, now)
        number, peer = request.get(ChannelNumber), request.get(XorPeerAddress)
        if number is None or peer is None:
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
        allocation.channels[channel] = (address, now + self.channel_lifetime)
        allocation.peer_channels[address] = channel
        allocation.permissions[peer.host] = now + self.permission_lifetime
        return request.success_response()

    _HANDLERS = {
        Method.ALLOCATE: _allocate,
        Method.REFRESH: _refresh,
        Method.CREATE_PERMISSION: _create_permission,
        Method.CHANNEL_BIND: _channel_bind,
    }

    def _indication(self, message: Message, client: Address, now: float) -> list[Output]:
        allocation = self._live(client, now)
        peer, data = message.get(XorPeerAddress), message.get(Data)
        if (
            message.method != Method.SEND
            or allocation is None
            or peer is None
            or data is None
            or message.unknown_comprehension_required()
            or not allocation.permits(peer.host, now)
        ):
            return self._drop()
        self.stats.to_peers += 1
        return [Output("peer", data.value, peer.address, allocation.relay)]

    def _client_channel_data(self, data: bytes, client: Address, now: float) -> list[Output]:
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
        self.stats.to_peers += 1
        return [Output("peer", frame.data, peer, allocation.relay)]

    # --- from peers ----------------------------------------------------------------------

    def peer_datagram(self, relay: Address, data: bytes, peer: Address, now: float) -> list[Output]:
        """Handle a datagram from ``peer`` on the relay port ``relay``."""
        allocation = self._by_relay.get(relay)
        if allocation is None or allocation.expires <= now or not allocation.permits(peer[0], now):
            return self._drop()
        channel = allocation.peer_channels.get(peer)
        try:
            if channel is not None and allocation.channels[channel][1] > now:
                out = ChannelData(channel, data).bytes()
            else:
                attributes: list[Attribute] = [XorPeerAddress(*peer), Data(data)]
                out = Message(Method.DATA, MessageClass.INDICATION, attributes=attributes).bytes()
        except ValueError:  # too big to wrap, or a peer address that is no IP address
            return self._drop()
        self.stats.to_clients += 1
        return [Output("client", out, allocation.client)]

    # --- housekeeping --------------------------------------------------------------------

    def expire(self, now: float) -> list[Address]:
        """Remove allocations past their lifetime and stale permissions and channels; return
        the relay addresses to close (those of allocations deleted since the last call)."""
        for allocation in list(self._by_client.values()):
            if allocation.expires <= now:
                self._delete(allocation)
            else:
                allocation.prune(now)
        closing, self._closing = self._closing, []
        return closing

    def client_gone(self, client: Address) -> None:
        """The client's TCP or TLS connection closed: its allocation goes with it (RFC 8656
        §3.7); the relay address is returned by the next :meth:`expire`."""
        allocation = self._by_client.get(client)
        if allocation is not None:
            self._delete(allocation)

    def _live(self, client: Address, now: float) -> Allocation | None:
        allocation = self._by_client.get(client)
        if allocation is not None and allocation.expires <= now:
            self._delete(allocation)
            return None
        return allocation

    def _owned(self, client: Address, result: AuthResult, now: float) -> Allocation:
        allocation = self._live(client, now)
        if allocation is None:
            raise _Refusal(437)
        if allocation.username != result.username:
            raise _Refusal(441)
        return allocation

    def _delete(self, allocation: Allocation) -> None:
        del self._by_client[allocation.client]
        del self._by_relay[allocation.relay]
        self._closing.append(allocation.relay)

    def _check_peer(self, allocation: Allocation, host: str) -> None:
        if not self.peers.permitted(host):
            raise _Refusal(403)
        if _family(host) != _family(allocation.relay[0]):
            raise _Refusal(443)

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
