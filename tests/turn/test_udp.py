"""Relay sockets: bound, read through the poller, written without checks, closed."""

from __future__ import annotations

import socket

import pytest

from tests.common.test_poller import Reactor
from vw.common.poller import DatagramPoller
from vw.turn.udp import RelaySocket


def test_a_relay_is_read_through_the_poller_and_sends_back() -> None:
    reactor, received = Reactor(), []
    poller = DatagramPoller(reactor, "test")
    relay = RelaySocket.bind(poller, ("127.0.0.1", 0), lambda d, a: received.append((d, a)))
    assert poller in reactor.readers and relay.address[1] != 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        for data in (b"one", b"two", b"three"):
            peer.sendto(data, relay.address)
        poller.doRead()
        assert received == [(d, peer.getsockname()) for d in (b"one", b"two", b"three")]
        relay.send(b"back", peer.getsockname())
        assert peer.recvfrom(100) == (b"back", relay.address)
    relay.close()
    assert poller not in reactor.readers
    relay.close()  # twice is harmless


def test_sending_to_nowhere_is_dropped_quietly() -> None:
    relay = RelaySocket.bind(DatagramPoller(Reactor(), "test"), ("127.0.0.1", 0), lambda d, a: None)
    relay.send(bytes(70000), ("127.0.0.1", 9))  # too big: EMSGSIZE, dropped
    relay.close()


def test_a_taken_port_raises_oserror() -> None:
    poller = DatagramPoller(Reactor(), "test")
    first = RelaySocket.bind(poller, ("127.0.0.1", 0), lambda d, a: None)
    with pytest.raises(OSError):
        RelaySocket.bind(poller, first.address, lambda d, a: None)
    first.close()
