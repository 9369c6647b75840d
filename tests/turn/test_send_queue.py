"""What the Python handlers send while the compiled relay reads joins its queue: it leaves after
what the relay queued before, in order, and as soon as a batch that held requests is done."""

from __future__ import annotations

import select
import socket
import sys
from collections.abc import Iterator

import pytest
from twisted.internet.testing import MemoryReactorClock

from tests.turn.test_allocations import make_core
from tests.turn.test_challenge import allocate
from tests.turn.test_channelrelay import NOW, Sockets, clock, fail_test, frame, read
from vw.common.poller import Address
from vw.turn.leases import ChannelPoller, ChannelRelay
from vw.turn.udp import RelaySocket

pytestmark = pytest.mark.skipif(ChannelRelay is None, reason="vw.turn._channelrelay not built")


@pytest.fixture
def sockets() -> Iterator[Sockets]:
    ends = Sockets()
    yield ends
    ends.close()


def nothing_waits(sock: socket.socket) -> bool:
    """Whether ``sock`` has no datagram to read now."""
    return not select.select([sock], [], [], 0)[0]


def test_outside_drain_nothing_is_queued(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    assert relay.send(sockets.listening.fileno(), b"x", sockets.address(sockets.client)) is False
    relay.flush(sockets.listening.fileno())
    assert nothing_waits(sockets.client)


def test_a_handlers_sends_follow_what_was_relayed_before_in_order(sockets: Sockets) -> None:
    """ChannelData relayed, then a request whose handler answers the client and sends to the
    same peer from the same relay socket, then ChannelData again: the peer gets all three in
    order, and nothing leaves while the handler runs."""
    relay = ChannelRelay(fail_test)
    listening, relay_fd = sockets.listening.fileno(), sockets.relay.fileno()
    peer = sockets.address(sockets.peer)
    waiting: list[bool] = []

    def handler(data: bytes, address: Address) -> None:
        waiting.append(nothing_waits(sockets.peer))
        assert relay.send(relay_fd, b"from the handler", peer)
        assert relay.send(listening, b"answer to " + data, address)
        waiting.append(nothing_waits(sockets.client))

    for datagram in (frame(b"one"), b"request", frame(b"two")):
        sockets.client.sendto(datagram, sockets.address(sockets.listening))
    assert read(relay, listening, sockets.client_leases(), NOW, 16, handler, False) == 3
    assert waiting == [True, True]
    assert [sockets.peer.recv(100) for _ in range(3)] == [b"one", b"from the handler", b"two"]
    assert sockets.client.recvfrom(100) == (b"answer to request",
                                            sockets.address(sockets.listening))
    assert nothing_waits(sockets.peer) and nothing_waits(sockets.client)


def test_queued_datagrams_are_held_until_sent_then_let_go(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    payload = bytes(range(200)) * 3
    before = sys.getrefcount(payload)
    counts: list[int] = []

    def handler(data: bytes, address: Address) -> None:
        assert relay.send(sockets.listening.fileno(), payload, address)
        counts.append(sys.getrefcount(payload))

    sockets.client.sendto(b"request", sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), {}, NOW, 16, handler, False) == 1
    assert counts == [before + 1]
    assert sys.getrefcount(payload) == before
    assert sockets.client.recv(1000) == payload


def test_more_sends_than_the_queue_holds_all_leave_in_order(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    listening = sockets.listening.fileno()

    def handler(data: bytes, address: Address) -> None:
        for n in range(200):
            assert relay.send(listening, b"%d" % n, address)

    sockets.client.sendto(b"request", sockets.address(sockets.listening))
    assert read(relay, listening, {}, NOW, 16, handler, False) == 1
    assert [sockets.client.recv(100) for _ in range(200)] == [b"%d" % n for n in range(200)]


@pytest.mark.parametrize("address", [
    ("fe80::1%lo", 9), ("localhost", 9), ("127.0.0.1", 70000), ("127.0.0.1", -1),
    ("127.0.0.1",), ["127.0.0.1", 9], ("127.0.0.1", "9"), (b"127.0.0.1", 9), None,
    ("127.0.0.1\0junk", 9),
])
def test_addresses_the_relay_cannot_name_are_the_callers_to_send(
        sockets: Sockets, address: object) -> None:
    relay = ChannelRelay(fail_test)
    answers: list[bool] = []

    def handler(data: bytes, source: Address) -> None:
        answers.append(relay.send(sockets.listening.fileno(), b"x", address))
        answers.append(relay.send(-1, b"x", source))
        for other in (bytearray(b"x"), memoryview(b"x"), "x"):
            answers.append(relay.send(sockets.listening.fileno(), other, source))

    sockets.client.sendto(b"request", sockets.address(sockets.listening))
    assert read(relay, sockets.listening.fileno(), {}, NOW, 16, handler, False) == 1
    assert answers == [False] * 5
    assert nothing_waits(sockets.client)


def test_send_checks_its_argument_types(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    with pytest.raises(TypeError):
        relay.send("3", b"x", ("127.0.0.1", 9))
    with pytest.raises(TypeError):
        relay.send(3, b"x")


def test_ipv6_destinations_are_queued() -> None:
    ends = Sockets("::1")
    try:
        relay = ChannelRelay(fail_test)

        def handler(data: bytes, address: Address) -> None:
            assert relay.send(ends.listening.fileno(), b"answer", address)

        ends.client.sendto(b"request", ends.address(ends.listening))
        assert read(relay, ends.listening.fileno(), {}, NOW, 16, handler, False) == 1
        assert ends.client.recv(100) == b"answer"
    finally:
        ends.close()


def test_a_batch_that_reached_python_is_sent_before_the_next_socket_is_read(
        sockets: Sockets) -> None:
    """Requests on two sockets read in one pass: the first one's answer has left by the time
    the second one's handler runs, whichever socket comes first."""
    relay = ChannelRelay(fail_test)
    seen: list[bool] = []

    def handler(data: bytes, address: Address) -> None:
        if seen:
            seen.append(not nothing_waits(sockets.client))
        else:
            seen.append(relay.send(sockets.relay.fileno(), b"answer", address))

    readers = {sock.fileno(): ({}, handler, False) for sock in (sockets.listening, sockets.relay)}
    for sock in (sockets.listening, sockets.relay):
        sockets.client.sendto(b"request", sockets.address(sock))
    with select.epoll() as ready:
        for fd in readers:
            ready.register(fd, select.EPOLLIN)
        assert relay.drain(ready.fileno(), readers, clock, 16, 16) == 2
    assert seen == [True, True]
    assert sockets.client.recv(100) == b"answer"


def test_a_socket_removed_from_the_poller_first_sends_what_it_queued() -> None:
    """A handler queues a datagram from one relay socket and closes that socket, and a new
    socket may take its descriptor: the datagram still leaves from the socket it was queued
    for."""
    poller = ChannelPoller(MemoryReactorClock(), "test", lambda: NOW)
    destination = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    destination.bind(("127.0.0.1", 0))
    destination.settimeout(2)
    closing = RelaySocket.bind(poller, ("127.0.0.1", 0), fail_test)
    opened: list[RelaySocket] = []

    def handler(data: bytes, address: Address) -> None:
        poller.send(closing.socket, b"last words", destination.getsockname())
        closing.close()
        opened.append(RelaySocket.bind(poller, ("127.0.0.1", 0), fail_test))

    reading = RelaySocket.bind(poller, ("127.0.0.1", 0), handler)
    sender = closing.address
    try:
        destination.sendto(b"go", reading.address)
        poller.doRead()
        assert destination.recvfrom(100) == (b"last words", sender)
        assert nothing_waits(destination)
    finally:
        for relay_socket in (reading, *opened):
            relay_socket.close()
        destination.close()


def test_flush_sends_only_when_the_socket_has_datagrams_queued(sockets: Sockets) -> None:
    relay = ChannelRelay(fail_test)
    listening = sockets.listening.fileno()
    waiting: list[bool] = []

    def handler(data: bytes, address: Address) -> None:
        assert relay.send(listening, b"answer", address)
        relay.flush(sockets.relay.fileno())
        waiting.append(nothing_waits(sockets.client))
        relay.flush(listening)
        waiting.append(nothing_waits(sockets.client))

    sockets.client.sendto(b"request", sockets.address(sockets.listening))
    assert read(relay, listening, {}, NOW, 16, handler, False) == 1
    assert waiting == [True, False]
    assert sockets.client.recv(100) == b"answer"
    assert nothing_waits(sockets.client)


def test_a_batch_answered_with_the_leased_401_is_sent_before_the_next_socket_is_read(
        sockets: Sockets) -> None:
    """A first Allocate on the listening socket, answered in C, then a request on the relay
    socket, read in the same pass (epoll reports them in the order they became ready): the
    401 has left by the time the second socket's handler runs."""
    core = make_core()
    relay = ChannelRelay(fail_test)
    attributes, since, until = core.challenge(NOW)
    relay.challenge = (sockets.listening.fileno(), attributes, since, until, 3.0,
                       core.challenge_admitted)
    seen: list[tuple[int, bool]] = []

    def handler(data: bytes, address: Address) -> None:
        seen.append((relay.challenges, not nothing_waits(sockets.client)))

    readers = {sockets.listening.fileno(): ({}, handler, False),
               sockets.relay.fileno(): ({}, handler, False)}
    sockets.client.sendto(allocate(), sockets.address(sockets.listening))
    assert select.select([sockets.listening], [], [], 2)[0]
    sockets.client.sendto(b"request", sockets.address(sockets.relay))
    with select.epoll() as ready:
        for fd in readers:
            ready.register(fd, select.EPOLLIN)
        assert relay.drain(ready.fileno(), readers, clock, 16, 16) == 2
    assert seen == [(1, True)]
    assert sockets.client.recv(200)[:2] == b"\x01\x13"


def test_a_datagram_the_kernel_refuses_is_counted_and_the_rest_still_leave(
        sockets: Sockets) -> None:
    """An IPv6 destination from an IPv4 socket: sendmmsg refuses that one datagram."""
    relay = ChannelRelay(fail_test)
    listening = sockets.listening.fileno()

    def handler(data: bytes, address: Address) -> None:
        assert relay.send(listening, b"before", address)
        assert relay.send(listening, b"refused", ("::1", 9))
        assert relay.send(listening, b"after", address)

    sockets.client.sendto(b"request", sockets.address(sockets.listening))
    assert read(relay, listening, {}, NOW, 16, handler, False) == 1
    assert relay.send_errors == 1
    assert [sockets.client.recv(100) for _ in range(2)] == [b"before", b"after"]
