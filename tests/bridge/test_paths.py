"""The media port's connected paths, on loopback sockets."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from tests.common.test_poller import Reactor
from vw.bridge.paths import MediaPaths
from vw.common.poller import Address, DatagramPoller
from vw.common.udplistener import UdpListener


class Port:
    """A media port: listener, poller and paths, with what they received."""

    def __init__(self) -> None:
        self.reactor = Reactor()
        self.poller = DatagramPoller(self.reactor, "test")
        self.received: list[tuple[bytes, Address]] = []
        self.listener = UdpListener(self.poller, 0, "127.0.0.1", self._received,
                                    share_port=True)
        self.listener.startService()
        self.paths = MediaPaths(self.poller, self.listener, self._received)

    def _received(self, data: bytes, address: Address) -> None:
        self.received.append((data, address))

    def read(self) -> list[tuple[bytes, Address]]:
        self.poller.doRead()
        received, self.received = self.received, []
        return received


@pytest.fixture
def port() -> Iterator[Port]:
    made = Port()
    yield made
    made.paths.close()
    made.listener.stopService()


def _client() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(2)
    return sock


def test_an_endpoint_path_sends_and_receives_from_the_media_port(port: Port) -> None:
    media = port.listener.address()
    with _client() as alice, _client() as bob:
        port.paths.changed(None, alice.getsockname())
        assert len(port.paths) == 1
        alice.sendto(b"from alice", media)
        bob.sendto(b"from bob", media)
        assert sorted(port.read()) == [(b"from alice", alice.getsockname()),
                                       (b"from bob", bob.getsockname())]
        port.paths.send(b"to alice", alice.getsockname())
        port.paths.send(b"to bob", bob.getsockname())
        assert alice.recvfrom(100) == (b"to alice", media)
        assert bob.recvfrom(100) == (b"to bob", media)


def test_the_connected_socket_gets_its_endpoint_datagrams(port: Port) -> None:
    with _client() as alice:
        port.paths.changed(None, alice.getsockname())
        listening = port.listener.socket
        assert listening is not None
        alice.sendto(b"media", port.listener.address())
        assert port.read() == [(b"media", alice.getsockname())]
        with pytest.raises(BlockingIOError):
            listening.recv(100)  # the path took it, not the listening socket


def test_a_moved_or_closed_path_falls_back_to_the_listening_socket(port: Port) -> None:
    media = port.listener.address()
    with _client() as old, _client() as new:
        port.paths.changed(None, old.getsockname())
        port.paths.changed(old.getsockname(), new.getsockname())
        assert len(port.paths) == 1
        port.paths.send(b"still answered", old.getsockname())
        assert old.recvfrom(100) == (b"still answered", media)
        port.paths.changed(new.getsockname(), None)
        assert len(port.paths) == 0
        new.sendto(b"back on the port", media)
        assert port.read() == [(b"back on the port", new.getsockname())]


def test_a_refused_send_is_dropped(port: Port) -> None:
    with _client() as gone:
        address = gone.getsockname()
    port.paths.changed(None, address)
    port.paths.send(b"x", address)
    port.read()  # the ICMP port unreachable is read and ignored
    port.paths.send(b"y", address)  # a pending error is dropped, not raised
    port.paths.send(bytes(70000), address)
