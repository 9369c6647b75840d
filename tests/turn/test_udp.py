"""Relay sockets: bound, read in batches, written without checks, closed."""

from __future__ import annotations

import socket

import pytest

from vw.turn.udp import RelaySocket


class Reactor:
    """Records the readers added and removed."""

    def __init__(self) -> None:
        self.readers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)


def test_datagrams_are_read_in_a_batch_and_sent_back() -> None:
    reactor, received = Reactor(), []
    relay = RelaySocket.bind(reactor, ("127.0.0.1", 0), lambda d, a: received.append((d, a)))
    assert relay in reactor.readers and relay.address[1] != 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
        peer.bind(("127.0.0.1", 0))
        for data in (b"one", b"two", b"three"):
            peer.sendto(data, relay.address)
        relay.doRead()
        assert received == [(d, peer.getsockname()) for d in (b"one", b"two", b"three")]
        relay.send(b"back", peer.getsockname())
        assert peer.recvfrom(100) == (b"back", relay.address)
    relay.doRead()  # nothing waiting: returns at once
    relay.close()
    assert relay not in reactor.readers
    relay.close()  # twice is harmless


def test_sending_to_nowhere_is_dropped_quietly() -> None:
    relay = RelaySocket.bind(Reactor(), ("127.0.0.1", 0), lambda d, a: None)
    relay.send(bytes(70000), ("127.0.0.1", 9))  # too big: EMSGSIZE, dropped
    relay.close()


def test_a_taken_port_raises_oserror() -> None:
    first = RelaySocket.bind(Reactor(), ("127.0.0.1", 0), lambda d, a: None)
    with pytest.raises(OSError):
        RelaySocket.bind(Reactor(), first.address, lambda d, a: None)
    first.close()
