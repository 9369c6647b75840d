"""The sans-IO UDP TURN core: allocations, permissions, channels, relaying, expiry."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vw.stun import (
    CHANNEL_MAX_RFC5766,
    FAMILY_IPV6,
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    Attribute,
    ChannelData,
    ChannelNumber,
    Data,
    ErrorCode,
    Lifetime,
    Message,
    MessageClass,
    Method,
    Nonce,
    RawAttribute,
    Realm,
    RequestedTransport,
    UnknownAttributes,
    Username,
    XorMappedAddress,
    XorPeerAddress,
    XorRelayedAddress,
    check_fingerprint,
    check_integrity,
    long_term_key,
)
from vw.turn.allocations import Address, Output, RelayGrant, RelayRequest, TurnCore
from vw.turn.auth import Authenticator, Nonces, rest_password
from vw.turn.peers import PeerPolicy

NOW = 1_700_000_000.0
REALM = "example.org"
SECRET = "rest secret"
CLIENT = ("198.51.100.7", 40000)
PEER = ("127.0.0.1", 5000)
USER = f"{int(NOW) + 86400}:alice"
KEY = long_term_key(USER, REALM, rest_password(SECRET, USER))


class Relays:
    """An ``open_relay`` handing out ports 50000, 50002... (and the odd one after when asked
    to reserve it) until ``free`` runs out; it remembers the requests."""

    def __init__(self, free: int = 100) -> None:
        self.free = free
        self.next = 50000
        self.requests: list[RelayRequest] = []

    def __call__(self, request: RelayRequest) -> RelayGrant | None:
        self.requests.append(request)
        if request.reserved is not None:
            return RelayGrant(request.reserved)
        if self.free == 0:
            return None
        self.free -= 1
        self.next += 2
        host = "2001:db8::1" if request.family == FAMILY_IPV6 else "192.0.2.1"
        port = self.next - 2
        return RelayGrant((host, port), (host, port + 1) if request.reserve_next else None)


def make_core(peers: PeerPolicy | None = None, **options: object) -> TurnCore:
    auth = Authenticator(REALM, [SECRET], {}, Nonces(b"nonce secret"))
    policy = PeerPolicy(allow=["127.0.0.1/32"]) if peers is None else peers
    return TurnCore(auth, policy, Relays(), **options)


@pytest.fixture
def core() -> TurnCore:
    return make_core()


def answer(outputs: list[Output], client: Address = CLIENT, fingerprint: bool = True) -> Message:
    """The one answer to ``client``; signed answers carry FINGERPRINT, unauthenticated ones
    only when their request did."""
    [out] = outputs
    assert out.kind == "client" and out.address == client and out.relay is None
    assert check_fingerprint(out.data) is fingerprint
    return Message.parse(out.data)


def closed(outputs: list[Output]) -> list[Address]:
    """The relay ports ``outputs`` close."""
    assert all(out.kind == "close" and out.connection is None for out in outputs)
    return [out.relay for out in outputs if out.relay is not None]


def signed(
    core: TurnCore,
    method: int,
    *attributes: Attribute,
    user: str = USER,
    client: Address = CLIENT,
    now: float = NOW,
) -> Message:
    """Send an authenticated request; return the (integrity-checked, if a success) answer."""
    key = long_term_key(user, REALM, rest_password(SECRET, user))
    nonce = core.auth.nonces.issue(now)
    request = Message(
        method,
        MessageClass.REQUEST,
        attributes=[*attributes, Username(user), Realm(REALM), Nonce(nonce)],
    )
    reply = answer(core.client_datagram(request.bytes(key), client, now), client)
    assert reply.transaction_id == request.transaction_id
    assert check_integrity(reply.raw or b"", key)
    return reply


def error(reply: Message) -> int | None:
    code = reply.get(ErrorCode)
    return None if code is None else code.code


def allocate(core: TurnCore, client: Address = CLIENT, user: str = USER) -> Message:
    return signed(
        core, Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), user=user, client=client
    )


def permit(core: TurnCore, *hosts: str) -> Message:
    return signed(core, Method.CREATE_PERMISSION, *(XorPeerAddress(h, 1) for h in hosts))


def send(core: TurnCore, peer: Address, data: bytes, now: float = NOW) -> list[Output]:
    message = Message(Method.SEND, MessageClass.INDICATION)
    message.attributes += [XorPeerAddress(*peer), Data(data)]
    return core.client_datagram(message.bytes(), CLIENT, now)


# --- Binding and Allocate --------------------------------------------------------------------


@pytest.mark.parametrize("fingerprint", [False, True])
def test_binding_answers_mapped_address(core: TurnCore, fingerprint: bool) -> None:
    request = Message(Method.BINDING, MessageClass.REQUEST)
    reply = answer(core.client_datagram(request.bytes(fingerprint=fingerprint), CLIENT, NOW),
                   fingerprint=fingerprint)
    assert reply.message_class is MessageClass.SUCCESS
    assert reply.get(XorMappedAddress) == XorMappedAddress(*CLIENT)


def test_binding_unknown_comprehension_required_is_420(core: TurnCore) -> None:
    request = Message(Method.BINDING, MessageClass.REQUEST, attributes=[RawAttribute(0x7F00, b"")])
    reply = answer(core.client_datagram(request.bytes(), CLIENT, NOW), fingerprint=False)
    assert error(reply) == 420 and reply.get(UnknownAttributes) == UnknownAttributes((0x7F00,))


def test_allocate_without_auth_is_challenged(core: TurnCore) -> None:
    core.client_connected(CLIENT)  # over TCP: no amplification limit
    request = Message(
        Method.ALLOCATE, MessageClass.REQUEST, attributes=[RequestedTransport(TRANSPORT_UDP)]
    )
    reply = answer(core.client_datagram(request.bytes(), CLIENT, NOW), fingerprint=False)
    assert error(reply) == 401
    assert reply.get(Realm) == Realm(REALM)
    nonce = reply.get(Nonce)
    assert nonce is not None and core.auth.nonces.check(nonce.value, NOW) == "ok"
    assert not core.allocations


def test_allocate_stale_nonce_is_438(core: TurnCore) -> None:
    old = core.auth.nonces.issue(NOW - 10_000)
    request = Message(Method.ALLOCATE, MessageClass.REQUEST)
    request.attributes += [RequestedTransport(TRANSPORT_UDP), Username(USER), Realm(REALM)]
    request.attributes.append(Nonce(old))
    data = request.bytes(KEY)
    [out] = core.client_datagram(data, CLIENT, NOW)
    assert len(out.data) <= len(data)
    reply = Message.parse(out.data)
    assert error(reply) == 438 and reply.get(Nonce) is not None


def test_allocate_succeeds(core: TurnCore) -> None:
    reply = allocate(core)
    assert reply.message_class is MessageClass.SUCCESS
    assert reply.get(XorRelayedAddress) == XorRelayedAddress("192.0.2.1", 50000)
    assert reply.get(XorMappedAddress) == XorMappedAddress(*CLIENT)
    assert reply.get(Lifetime) == Lifetime(600)
    assert core.allocations[CLIENT].relay == ("192.0.2.1", 50000)


def test_allocations_made_and_ended_are_told_with_why() -> None:
    events: list[tuple[Address, str, float]] = []
    core = make_core(allocation_event=lambda a, event: events.append((a.client, event,
                                                                      a.started)))
    others = [("198.51.100.8", 1), ("198.51.100.9", 2)]
    for client in (CLIENT, *others):
        assert error(allocate(core, client)) is None
    request = Message(Method.REFRESH, MessageClass.REQUEST, attributes=[
        Lifetime(0), Username(USER), Realm(REALM), Nonce(core.auth.nonces.issue(NOW))])
    assert error(answer(core.client_datagram(request.bytes(KEY), CLIENT, NOW)[:1])) is None
    core.client_connected(others[1])
    core.client_gone(others[1])
    core.expire(NOW + 601)
    assert events == [(CLIENT, "allocated", NOW), (others[0], "allocated", NOW),
                      (others[1], "allocated", NOW), (CLIENT, "deleted", NOW),
                      (others[1], "connection closed", NOW), (others[0], "expired", NOW)]


def test_allocate_retransmission_gets_same_answer_other_is_437(core: TurnCore) -> None:
    request = Message(Method.ALLOCATE, MessageClass.REQUEST)
    request.attributes += [RequestedTransport(TRANSPORT_UDP), Username(USER), Realm(REALM)]
    request.attributes.append(Nonce(core.auth.nonces.issue(NOW)))
    first = answer(core.client_datagram(request.bytes(KEY), CLIENT, NOW))
    again = answer(core.client_datagram(request.bytes(KEY), CLIENT, NOW + 1))
    assert again.get(XorRelayedAddress) == first.get(XorRelayedAddress)
    assert error(allocate(core)) == 437
    assert len(core.allocations) == 1


def test_allocate_transport_checks(core: TurnCore) -> None:
    assert error(signed(core, Method.ALLOCATE)) == 400
    assert error(signed(core, Method.ALLOCATE, RequestedTransport(99))) == 442
    # RFC 6062 §5.1: a TCP allocation is asked over TCP or TLS.
    assert error(signed(core, Method.ALLOCATE, RequestedTransport(TRANSPORT_TCP))) == 400


def test_allocate_unknown_attribute_is_signed_420(core: TurnCore) -> None:
    reply = signed(
        core, Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP), RawAttribute(0x7F01, b"x")
    )
    assert error(reply) == 420 and reply.get(UnknownAttributes) == UnknownAttributes((0x7F01,))


def test_allocate_lifetime_is_clamped(core: TurnCore) -> None:
    for requested, granted, port in ((10, 600, 1), (7200, 3600, 2), (1200, 1200, 3)):
        reply = signed(
            core,
            Method.ALLOCATE,
            RequestedTransport(TRANSPORT_UDP),
            Lifetime(requested),
            client=("198.51.100.7", port),
        )
        assert reply.get(Lifetime) == Lifetime(granted)


def test_user_quota_is_486() -> None:
    core = make_core(max_allocations_per_user=2)
    assert error(allocate(core, ("198.51.100.7", 1))) is None
    assert error(allocate(core, ("198.51.100.7", 2))) is None
    assert error(allocate(core, ("198.51.100.7", 3))) == 486
    other = f"{int(NOW) + 86400}:bob"
    assert error(allocate(core, ("198.51.100.7", 4), user=other)) is None


def test_total_quota_is_486_and_no_port_is_508() -> None:
    core = make_core(max_allocations=1)
    allocate(core, ("198.51.100.7", 1))
    assert error(allocate(core, ("198.51.100.7", 2), user=f"{int(NOW) + 60}:bob")) == 486
    core = make_core()
    core.open_relay = Relays(free=0)
    assert error(allocate(core)) == 508


# --- Refresh and expiry ----------------------------------------------------------------------


def test_refresh_without_allocation_is_437(core: TurnCore) -> None:
    assert error(signed(core, Method.REFRESH)) == 437


def test_refresh_by_another_user_is_441(core: TurnCore) -> None:
    allocate(core)
    assert error(signed(core, Method.REFRESH, user=f"{int(NOW) + 60}:mallory")) == 441


def test_refresh_extends_and_zero_deletes(core: TurnCore) -> None:
    allocate(core)
    reply = signed(core, Method.REFRESH, Lifetime(99999), now=NOW + 500)
    assert reply.get(Lifetime) == Lifetime(3600)
    assert core.expire(NOW + 3000) == []
    request = Message(Method.REFRESH, MessageClass.REQUEST, attributes=[
        Lifetime(0), Username(USER), Realm(REALM), Nonce(core.auth.nonces.issue(NOW + 3000))])
    outputs = core.client_datagram(request.bytes(KEY), CLIENT, NOW + 3000)
    reply = answer(outputs[:1])
    assert reply.get(Lifetime) == Lifetime(0) and error(reply) is None
    assert closed(outputs[1:]) == [("192.0.2.1", 50000)]  # at once
    assert not core.allocations
    assert core.expire(NOW + 3002) == []


def test_allocation_expires(core: TurnCore) -> None:
    allocate(core)
    assert core.expire(NOW + 599) == []
    assert closed(core.expire(NOW + 600)) == [("192.0.2.1", 50000)]
    assert not core.allocations
    assert peer_to_client(core, ("192.0.2.1", 50000)) == []


# --- permissions and relaying ----------------------------------------------------------------


def peer_to_client(core: TurnCore, relay: Address, now: float = NOW) -> list[Output]:
    return core.peer_datagram(relay, b"from peer", PEER, now)


def test_permission_send_and_data_indication(core: TurnCore) -> None:
    relay = ("192.0.2.1", 50000)
    allocate(core)
    assert send(core, PEER, b"early") == []  # no permission yet
    assert peer_to_client(core, relay) == []
    assert error(permit(core, "127.0.0.1")) is None
    assert send(core, PEER, b"hello") == [Output("peer", b"hello", PEER, relay)]
    [out] = peer_to_client(core, relay)
    assert out.kind == "client" and out.address == CLIENT and out.relay is None
    indication = Message.parse(out.data)
    assert (indication.method, indication.message_class) == (Method.DATA, MessageClass.INDICATION)
    assert indication.get(XorPeerAddress) == XorPeerAddress(*PEER)
    assert indication.get(Data) == Data(b"from peer")
    assert core.stats.to_peers == 1 and core.stats.to_clients == 1


def test_permission_expires(core: TurnCore) -> None:
    allocate(core)
    permit(core, "127.0.0.1")
    assert send(core, PEER, b"x", NOW + 299) != []
    assert send(core, PEER, b"x", NOW + 300) == []
    core.expire(NOW + 300)
    assert core.allocations[CLIENT].permissions == {}


@pytest.mark.parametrize("host", ["10.0.0.1", "169.254.169.254", "::1", "192.168.1.1"])
def test_denied_peers_are_403(core: TurnCore, host: str) -> None:
    allocate(core)
    assert error(permit(core, host)) == 403
    assert error(permit(core, "127.0.0.1", host)) == 403
    assert core.allocations[CLIENT].permissions == {}  # all or nothing


def test_mapped_loopback_denied_unless_allowed() -> None:
    core = make_core(PeerPolicy())
    allocate(core)
    assert error(permit(core, "::ffff:127.0.0.1")) == 403
    assert error(permit(core, "127.0.0.1")) == 403


def test_peer_family_mismatch_is_443(core: TurnCore) -> None:
    allocate(core)
    assert error(permit(core, "2001:4860::1")) == 443


def test_create_permission_needs_peer_and_allocation(core: TurnCore) -> None:
    assert error(permit(core, "127.0.0.1")) == 437
    allocate(core)
    assert error(signed(core, Method.CREATE_PERMISSION)) == 400


# --- channels --------------------------------------------------------------------------------


def bind(core: TurnCore, channel: int, peer: Address = PEER, now: float = NOW) -> Message:
    return signed(core, Method.CHANNEL_BIND, ChannelNumber(channel), XorPeerAddress(*peer), now=now)


def test_channel_data_both_ways(core: TurnCore) -> None:
    relay = ("192.0.2.1", 50000)
    allocate(core)
    frame = ChannelData(0x4001, b"media").bytes()
    assert core.client_datagram(frame, CLIENT, NOW) == []  # not bound yet
    assert error(bind(core, 0x4001)) is None
    assert core.client_datagram(frame, CLIENT, NOW) == [Output("peer", b"media", PEER, relay)]
    [out] = peer_to_client(core, relay)
    assert ChannelData.parse(out.data) == ChannelData(0x4001, b"from peer")
    assert send(core, PEER, b"also") != []  # binding installed a permission


def test_relay_fast_paths_answer_hops_and_count(core: TurnCore) -> None:
    relay, relay_datagram = ("192.0.2.1", 50000), core.relay_client_datagram
    allocate(core)
    frame = ChannelData(0x4001, b"media").bytes()
    indication = Message(Method.SEND, MessageClass.INDICATION,
                         attributes=[XorPeerAddress(*PEER), Data(b"sent")])
    assert relay_datagram(frame, CLIENT, NOW) == []  # not bound yet
    assert relay_datagram(b"\x40\x01\x00\x09abc", CLIENT, NOW) == []  # truncated
    assert relay_datagram(indication.bytes(), CLIENT, NOW) == []  # no permission yet
    assert core.peer_to_client(relay, b"early", PEER, NOW) is None
    assert (core.stats.dropped, core.stats.malformed) == (3, 1)
    assert error(bind(core, 0x4001)) is None
    assert relay_datagram(frame, CLIENT, NOW) == (relay, b"media", PEER)
    for raw in (indication.bytes(), indication.bytes(fingerprint=True)):
        assert relay_datagram(raw, CLIENT, NOW) == (relay, b"sent", PEER)
    data, client = core.peer_to_client(relay, b"back", PEER, NOW)  # type: ignore[misc]
    assert client == CLIENT and ChannelData.parse(data) == ChannelData(0x4001, b"back")
    other = ("127.0.0.1", 7000)
    data, client = core.peer_to_client(relay, b"plain", other, NOW)  # type: ignore[misc]
    assert Message.parse(data).get(Data) == Data(b"plain")  # no channel: a Data indication
    assert (core.stats.to_peers, core.stats.to_clients) == (3, 2)


@pytest.mark.parametrize("channel", [0x3FFF, 0x5000, 0x7FFF, 0])
def test_bad_channel_numbers_are_400(core: TurnCore, channel: int) -> None:
    allocate(core)
    assert error(bind(core, channel)) == 400


def test_rfc5766_channel_numbers_when_configured(core: TurnCore) -> None:
    core.last_channel = CHANNEL_MAX_RFC5766
    allocate(core)
    assert error(bind(core, 0x7FFF)) is None
    assert core.client_datagram(ChannelData(0x7FFF, b"m").bytes(), CLIENT, NOW) != []
    assert error(bind(core, 0x8000)) == 400


def test_channel_conflicts_are_400_refresh_ok(core: TurnCore) -> None:
    allocate(core)
    assert error(bind(core, 0x4000)) is None
    assert error(bind(core, 0x4000, ("127.0.0.1", 5001))) == 400
    assert error(bind(core, 0x4002)) == 400
    assert error(bind(core, 0x4000, now=NOW + 500)) is None  # refresh
    assert core.allocations[CLIENT].channels[0x4000][1] == NOW + 1100


def test_channel_to_denied_peer_is_403(core: TurnCore) -> None:
    allocate(core)
    assert error(bind(core, 0x4000, ("10.0.0.1", 5000))) == 403


def test_channel_expires(core: TurnCore) -> None:
    allocate(core)
    signed(core, Method.REFRESH, Lifetime(3600))
    bind(core, 0x4000)
    permit_late = NOW + 599
    signed(core, Method.CREATE_PERMISSION, XorPeerAddress(*PEER), now=permit_late)
    frame = ChannelData(0x4000, b"x").bytes()
    assert core.client_datagram(frame, CLIENT, NOW + 600) == []
    [out] = peer_to_client(core, ("192.0.2.1", 50000), NOW + 600)
    assert Message.parse(out.data).method == Method.DATA  # back to Data indications
    core.expire(NOW + 600)
    assert core.allocations[CLIENT].channels == {}
    assert error(bind(core, 0x4001, now=NOW + 601)) is None


# --- garbage ---------------------------------------------------------------------------------


def test_responses_and_unknown_indications_are_dropped(core: TurnCore) -> None:
    allocate(core)
    for message in (
        Message(Method.BINDING, MessageClass.SUCCESS),
        Message(Method.DATA, MessageClass.INDICATION),
        Message(Method.SEND, MessageClass.INDICATION),
    ):
        assert core.client_datagram(message.bytes(), CLIENT, NOW) == []
    assert core.stats.dropped == 3


def test_unknown_method_request_is_400(core: TurnCore) -> None:
    core.client_connected(CLIENT)
    request = Message(0x0FF, MessageClass.REQUEST).bytes()
    reply = answer(core.client_datagram(request, CLIENT, NOW), fingerprint=False)
    assert error(reply) == 400


def test_bad_fingerprint_is_malformed(core: TurnCore) -> None:
    data = bytearray(Message(Method.BINDING, MessageClass.REQUEST).bytes(fingerprint=True))
    data[-1] ^= 1
    assert core.client_datagram(bytes(data), CLIENT, NOW) == []
    assert core.stats.malformed == 1


@given(st.binary(max_size=200))
def test_garbage_never_raises(data: bytes) -> None:
    core = make_core()
    allocate(core)
    permit(core, "127.0.0.1")
    core.client_datagram(data, CLIENT, NOW)
    core.client_datagram(b"\x00\x01" + data, CLIENT, NOW)
    core.client_datagram(b"\x40\x00" + data, CLIENT, NOW)
    core.peer_datagram(("192.0.2.1", 50000), data, PEER, NOW)


@given(st.binary(min_size=20, max_size=200), st.integers(0, 0xFFFF))
def test_garbage_with_stun_header_never_raises(body: bytes, message_type: int) -> None:
    core = make_core()
    allocate(core)
    header = message_type.to_bytes(2, "big") + len(body[20:]).to_bytes(2, "big")
    data = header + b"\x21\x12\xa4\x42" + body[8:]
    core.client_datagram(data, CLIENT, NOW)


def test_oversized_peer_datagram_dropped(core: TurnCore) -> None:
    allocate(core)
    permit(core, "127.0.0.1")
    assert core.peer_datagram(("192.0.2.1", 50000), bytes(65530), PEER, NOW) == []
    assert core.stats.dropped == 1


def test_a_closed_stream_takes_its_allocation_along(core: TurnCore) -> None:
    allocate(core)
    (relay,) = [a.relay for a in core.allocations.values()]
    assert closed(core.client_gone(CLIENT)) == [relay]
    assert core.allocations == {}
    assert core.client_gone(CLIENT) == []  # nothing left: nothing happens
    assert core.expire(NOW) == []
