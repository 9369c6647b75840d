"""Allocate's options and the server's safety limits in the sans-IO core: EVEN-PORT and
RESERVATION-TOKEN, REQUESTED-ADDRESS-FAMILY (RFC 6156), DONT-FRAGMENT, no amplification over
UDP, the rate of unauthenticated requests, bandwidth caps and draining."""

from __future__ import annotations

from tests.turn.test_allocations import (
    CLIENT,
    NOW,
    PEER,
    REALM,
    SECRET,
    allocate,
    closed,
    error,
    make_core,
    permit,
    send,
    signed,
)
from vw.stun import (
    FAMILY_IPV4,
    FAMILY_IPV6,
    TRANSPORT_UDP,
    ChannelNumber,
    DontFragment,
    EvenPort,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedAddressFamily,
    RequestedTransport,
    ReservationToken,
    Software,
    XorPeerAddress,
    XorRelayedAddress,
)
from vw.turn.allocations import RESERVATION_LIFETIME
from vw.turn.auth import Authenticator, Nonces
from vw.turn.peers import PeerPolicy

UDP = RequestedTransport(TRANSPORT_UDP)
OTHER = ("198.51.100.8", 40000)


def test_even_port_with_reservation_then_the_token_gets_the_next_port() -> None:
    core = make_core()
    reply = signed(core, Method.ALLOCATE, UDP, EvenPort(reserve=True))
    assert reply.get(XorRelayedAddress) == XorRelayedAddress("192.0.2.1", 50000)
    token = reply.get(ReservationToken)
    assert token is not None and len(token.value) == 8
    assert core.open_relay.requests[0].even and core.open_relay.requests[0].reserve_next
    second = signed(core, Method.ALLOCATE, UDP, token, client=OTHER)
    assert second.get(XorRelayedAddress) == XorRelayedAddress("192.0.2.1", 50001)
    # A token is good once.
    third = signed(core, Method.ALLOCATE, UDP, token, client=("198.51.100.9", 1))
    assert error(third) == 508


def test_an_unused_reservation_is_released() -> None:
    core = make_core()
    token = signed(core, Method.ALLOCATE, UDP, EvenPort(reserve=True)).get(ReservationToken)
    assert closed(core.expire(NOW + RESERVATION_LIFETIME)) == [("192.0.2.1", 50001)]
    assert error(signed(core, Method.ALLOCATE, UDP, token, client=OTHER)) == 508


def test_a_token_with_even_port_or_a_family_is_400() -> None:
    core = make_core()
    token = signed(core, Method.ALLOCATE, UDP, EvenPort(reserve=True)).get(ReservationToken)
    assert error(signed(core, Method.ALLOCATE, UDP, token, EvenPort(), client=OTHER)) == 400
    family = RequestedAddressFamily(FAMILY_IPV4)
    assert error(signed(core, Method.ALLOCATE, UDP, token, family, client=OTHER)) == 400


def test_ipv6_relays_only_when_configured() -> None:
    core = make_core()
    ipv6 = RequestedAddressFamily(FAMILY_IPV6)
    assert error(signed(core, Method.ALLOCATE, UDP, ipv6)) == 440
    core = make_core()
    core.relay_families = frozenset({FAMILY_IPV4, FAMILY_IPV6})
    reply = signed(core, Method.ALLOCATE, UDP, ipv6)
    assert reply.get(XorRelayedAddress) == XorRelayedAddress("2001:db8::1", 50000)
    # An IPv6 relay reaches IPv6 peers only (443), and Refresh keeps the family (443).
    assert error(signed(core, Method.CREATE_PERMISSION, XorPeerAddress("127.0.0.1", 1))) == 443
    assert error(signed(core, Method.REFRESH, RequestedAddressFamily(FAMILY_IPV4))) == 443


def test_dont_fragment_reaches_the_relay_request() -> None:
    core = make_core()
    assert error(signed(core, Method.ALLOCATE, UDP, DontFragment())) is None
    assert core.open_relay.requests[0].dont_fragment


def test_a_browsers_first_allocate_gets_a_challenge_within_three_times_its_size() -> None:
    core = make_core()
    first = bytes.fromhex("000300082112a442" + "11" * 12 + "0019000411000000")  # Chromium's
    [out] = core.client_datagram(first, CLIENT, NOW)
    reply = Message.parse(out.data)
    assert error(reply) == 401 and reply.get(Nonce) is not None and reply.get(Realm)
    assert len(first) == 28 and len(out.data) <= 3 * len(first)


def test_no_answer_over_udp_larger_than_the_limit_allows() -> None:
    core = make_core(amplification_limit=1)
    small = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[UDP]).bytes()
    assert core.client_datagram(small, CLIENT, NOW) == []
    binding = Message(Method.BINDING, MessageClass.REQUEST).bytes()
    assert core.client_datagram(binding, CLIENT, NOW) == []
    assert core.stats.refusals["amplification"] == 2
    # Padded with a SOFTWARE attribute, the request is as large as the challenge: answered.
    padded = Message(Method.ALLOCATE, MessageClass.REQUEST,
                     attributes=[UDP, Software("x" * 60)]).bytes()
    [out] = core.client_datagram(padded, CLIENT, NOW)
    assert error(Message.parse(out.data)) == 401 and len(out.data) <= len(padded)
    # Over TCP the address is proven: the challenge goes out whatever its size.
    core.client_connected(OTHER)
    [out] = core.client_datagram(small, OTHER, NOW)
    assert len(out.data) > len(small)


def test_unauthenticated_requests_are_rate_limited_per_source_ip() -> None:
    core = make_core(unauthenticated_rate=2)
    binding = Message(Method.BINDING, MessageClass.REQUEST)
    answered = [bool(core.client_datagram(binding.bytes(), (CLIENT[0], port), NOW))
                for port in range(10)]
    assert answered == [True] * 8 + [False] * 2  # a burst of 4 seconds' worth
    assert core.stats.refusals["rate"] == 2
    assert core.client_datagram(binding.bytes(), OTHER, NOW) != []  # another source
    assert core.client_datagram(binding.bytes(), CLIENT, NOW + 1) != []  # refilled
    # Authenticated requests are not counted.
    assert error(allocate(core)) is None


def test_bandwidth_cap_per_allocation() -> None:
    core = make_core(max_bandwidth=1000)
    allocate(core)
    permit(core, "127.0.0.1")
    sent = [bool(send(core, PEER, bytes(500))) for _ in range(10)]
    assert sent == [True] * 8 + [False] * 2  # 4 seconds' worth, both ways together
    assert core.peer_datagram(("192.0.2.1", 50000), b"x", PEER, NOW) == []
    assert core.stats.refusals["bandwidth"] == 3
    assert send(core, PEER, bytes(500), now=NOW + 1)  # refilled


def test_draining_refuses_new_allocations_and_keeps_the_others() -> None:
    core = make_core()
    allocate(core)
    permit(core, "127.0.0.1")
    core.draining = True
    assert error(allocate(core, OTHER)) == 403
    assert send(core, PEER, b"still relayed")


def test_permissions_per_allocation_are_capped_at_508() -> None:
    core = make_core(max_permissions=2, peers=PeerPolicy(allow=["127.0.0.0/8"]))
    allocate(core)
    assert error(permit(core, "127.0.0.1", "127.0.0.2")) is None
    assert error(permit(core, "127.0.0.2")) is None  # a refresh takes no room
    assert error(permit(core, "127.0.0.3")) == 508
    assert error(signed(core, Method.CHANNEL_BIND, ChannelNumber(0x4000),
                        XorPeerAddress("127.0.0.3", 9))) == 508


def test_software_only_when_configured() -> None:
    core = make_core()
    assert allocate(core).get(Software) is None
    core = make_core(software="vw-turn")
    assert allocate(core).get(Software) == Software("vw-turn")
    core.client_connected(OTHER)
    request = Message(Method.ALLOCATE, MessageClass.REQUEST, attributes=[UDP]).bytes()
    [out] = core.client_datagram(request, OTHER, NOW)
    assert Message.parse(out.data).get(Software) == Software("vw-turn")


def test_a_previous_rest_secret_is_still_accepted() -> None:
    core = make_core()
    core.auth = Authenticator(REALM, ["new secret", SECRET], {}, Nonces(b"n"))
    assert error(allocate(core)) is None  # signed under SECRET, now the previous one
