"""RFC 6062 TCP allocations in the sans-IO core: Connect, ConnectionAttempt, ConnectionBind."""

from __future__ import annotations

import pytest

from tests.turn.test_allocations import (
    CLIENT,
    KEY,
    NOW,
    REALM,
    SECRET,
    USER,
    answer,
    error,
    make_core,
    signed,
)
from vw.stun import (
    TRANSPORT_TCP,
    TRANSPORT_UDP,
    ChannelNumber,
    ConnectionId,
    Message,
    MessageClass,
    Method,
    Nonce,
    Realm,
    RequestedTransport,
    Username,
    XorPeerAddress,
    long_term_key,
)
from vw.turn.allocations import CONNECTION_BIND_TIMEOUT, Output, TurnCore
from vw.turn.auth import rest_password

PEER = ("127.0.0.1", 6000)
DATA_CLIENT = (CLIENT[0], CLIENT[1] + 1)
RELAY = ("192.0.2.1", 50000)


@pytest.fixture
def core() -> TurnCore:
    """A core with a TCP allocation for CLIENT, permitted to reach PEER."""
    core = make_core()
    core.client_connected(CLIENT)
    assert error(signed(core, Method.ALLOCATE, RequestedTransport(TRANSPORT_TCP))) is None
    assert core.allocations[CLIENT].transport == TRANSPORT_TCP
    assert error(signed(core, Method.CREATE_PERMISSION, XorPeerAddress(*PEER))) is None
    return core


def request(core: TurnCore, method: int, *attributes: object,
            client: tuple[str, int] = CLIENT, now: float = NOW) -> list[Output]:
    """An authenticated request's outputs, whatever they are."""
    message = Message(method, MessageClass.REQUEST, attributes=[
        *attributes, Username(USER), Realm(REALM), Nonce(core.auth.nonces.issue(now))])
    return core.client_datagram(message.bytes(KEY), client, now)


def test_connect_opens_a_connection_and_is_answered_when_it_is_up(core: TurnCore) -> None:
    [connect] = request(core, Method.CONNECT, XorPeerAddress(*PEER))
    assert (connect.kind, connect.address, connect.relay) == ("connect", PEER, RELAY)
    assert connect.connection in core.connections
    reply = answer(core.peer_connected(connect.connection, NOW + 1))
    assert reply.get(ConnectionId) == ConnectionId(connect.connection)
    core.client_connected(DATA_CLIENT)
    outputs = request(core, Method.CONNECTION_BIND, ConnectionId(connect.connection),
                      client=DATA_CLIENT)
    assert error(answer(outputs[:1], DATA_CLIENT)) is None
    assert outputs[1:] == [Output("splice", b"", DATA_CLIENT, connection=connect.connection)]
    # Bound: the same id cannot be bound twice.
    assert error(answer(request(core, Method.CONNECTION_BIND, ConnectionId(connect.connection),
                                client=("198.51.100.7", 9)), ("198.51.100.7", 9))) == 400


def test_a_second_connect_to_the_same_peer_is_446(core: TurnCore) -> None:
    request(core, Method.CONNECT, XorPeerAddress(*PEER))
    assert error(answer(request(core, Method.CONNECT, XorPeerAddress(*PEER)))) == 446


def test_a_failed_connect_is_447(core: TurnCore) -> None:
    [connect] = request(core, Method.CONNECT, XorPeerAddress(*PEER))
    assert error(answer(core.peer_connect_failed(connect.connection))) == 447
    assert core.connections == {}
    assert core.stats.refusals["447"] == 1


def test_connect_needs_a_permitted_peer_and_a_tcp_allocation(core: TurnCore) -> None:
    assert error(answer(request(core, Method.CONNECT, XorPeerAddress("10.0.0.1", 80)))) == 403
    assert error(answer(request(core, Method.CONNECT, XorPeerAddress("127.0.0.2", 80)))) == 403
    assert error(answer(request(core, Method.CONNECT))) == 400
    udp = make_core()
    assert error(signed(udp, Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))) is None
    assert error(signed(udp, Method.CONNECT, XorPeerAddress(*PEER))) == 400


def test_without_tcp_relays_a_tcp_allocation_is_442_and_udp_ones_work() -> None:
    core = make_core(tcp_relays=False)
    core.client_connected(CLIENT)
    assert error(signed(core, Method.ALLOCATE, RequestedTransport(TRANSPORT_TCP))) == 442
    assert CLIENT not in core.allocations
    assert error(signed(core, Method.ALLOCATE, RequestedTransport(TRANSPORT_UDP))) is None
    assert error(signed(core, Method.CONNECT, XorPeerAddress(*PEER))) == 400


def test_channels_are_refused_on_tcp_allocations(core: TurnCore) -> None:
    reply = answer(request(core, Method.CHANNEL_BIND, ChannelNumber(0x4000),
                           XorPeerAddress(*PEER)))
    assert error(reply) == 400


def test_a_peer_connecting_gets_a_connection_attempt_to_the_client(core: TurnCore) -> None:
    connection_id, outputs = core.peer_connection_arrived(RELAY, ("127.0.0.1", 7000), NOW)
    assert connection_id is not None
    attempt = answer(outputs)
    assert (attempt.method, attempt.message_class) == (Method.CONNECTION_ATTEMPT,
                                                       MessageClass.INDICATION)
    assert attempt.get(ConnectionId) == ConnectionId(connection_id)
    assert attempt.get(XorPeerAddress) == XorPeerAddress("127.0.0.1", 7000)
    # Unpermitted peers, unknown relays: refused.
    assert core.peer_connection_arrived(RELAY, ("10.1.1.1", 7000), NOW) == (None, [])
    assert core.peer_connection_arrived(("192.0.2.9", 1), ("127.0.0.1", 7000), NOW) == (None, [])


def test_an_unbound_connection_is_closed_after_30_seconds(core: TurnCore) -> None:
    connection_id, _ = core.peer_connection_arrived(RELAY, ("127.0.0.1", 7000), NOW)
    assert core.expire(NOW + CONNECTION_BIND_TIMEOUT - 1) == []
    [close] = core.expire(NOW + CONNECTION_BIND_TIMEOUT)
    assert (close.kind, close.connection) == ("close", connection_id)
    assert core.connections == {}
    core.client_connected(DATA_CLIENT)
    late = request(core, Method.CONNECTION_BIND, ConnectionId(connection_id),
                   client=DATA_CLIENT, now=NOW + 31)
    assert error(answer(late, DATA_CLIENT)) == 400


def test_connection_bind_by_another_user_is_441(core: TurnCore) -> None:
    connection_id, _ = core.peer_connection_arrived(RELAY, ("127.0.0.1", 7000), NOW)
    other = f"{int(NOW) + 60}:mallory"
    key = long_term_key(other, REALM, rest_password(SECRET, other))
    core.client_connected(DATA_CLIENT)
    message = Message(Method.CONNECTION_BIND, MessageClass.REQUEST, attributes=[
        ConnectionId(connection_id), Username(other), Realm(REALM),
        Nonce(core.auth.nonces.issue(NOW))])
    assert error(answer(core.client_datagram(message.bytes(key), DATA_CLIENT, NOW),
                        DATA_CLIENT)) == 441


def test_closing_the_control_connection_closes_relay_and_peer_connections(
        core: TurnCore) -> None:
    connection_id, _ = core.peer_connection_arrived(RELAY, ("127.0.0.1", 7000), NOW)
    closing = core.client_gone(CLIENT)
    assert {(out.kind, out.connection, out.relay) for out in closing} == {
        ("close", connection_id, RELAY), ("close", None, RELAY)}
    assert core.allocations == {} and core.connections == {}


def test_a_data_connection_closing_closes_its_peer_connection(core: TurnCore) -> None:
    connection_id, _ = core.peer_connection_arrived(RELAY, ("127.0.0.1", 7000), NOW)
    core.client_connected(DATA_CLIENT)
    request(core, Method.CONNECTION_BIND, ConnectionId(connection_id), client=DATA_CLIENT)
    [close] = core.client_gone(DATA_CLIENT)
    assert (close.kind, close.connection) == ("close", connection_id)
    assert CLIENT in core.allocations
