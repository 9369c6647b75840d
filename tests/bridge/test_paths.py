"""The media port's connected paths, on loopback sockets."""

from __future__ import annotations

import errno
import socket
import struct
from collections.abc import Iterator

import pytest

from tests.common.test_poller import Reactor
from vw.bridge.paths import UDP_SEGMENT, MediaPaths, segmentation_supported
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


class RecordingSocket:
    """Records the sends of a path (sizes, and the segment size of segmented ones)."""

    def __init__(self, refuse_segments: int | None = None) -> None:
        self.calls: list[tuple[list[int], int | None]] = []
        self.refuse_segments = refuse_segments

    def send(self, data: bytes) -> None:
        self.calls.append(([len(data)], None))

    def sendmsg(self, buffers: list[bytes], ancillary: list[tuple[int, int, bytes]]) -> None:
        if self.refuse_segments is not None:
            raise OSError(self.refuse_segments, "refused")
        [(level, kind, data)] = ancillary
        assert (level, kind) == (socket.SOL_UDP, UDP_SEGMENT)
        segment = struct.unpack("=H", data)[0]
        whole = len(buffers[0])
        self.calls.append(([segment] * (whole // segment) + ([whole % segment] if whole %
                                                              segment else []), segment))


def test_runs_of_equal_size_go_in_one_segmented_send(port: Port) -> None:
    sock = RecordingSocket()
    sizes = [1000, 1000, 1000, 400, 1000, 900, 900, 1200, 1200]
    port.paths._send(sock, ("127.0.0.1", 9), [bytes(n) for n in sizes])  # type: ignore[arg-type]
    assert sock.calls == [([1000, 1000, 1000, 400], 1000), ([1000, 900], 1000),
                          ([900], None), ([1200, 1200], 1200)]
    many = RecordingSocket()
    port.paths._send(many, ("127.0.0.1", 9), [bytes(1200)] * 60)  # type: ignore[arg-type]
    assert [len(sizes) for sizes, _ in many.calls] == [54, 6]  # at most 65,000 bytes a call


def test_a_route_that_refuses_segments_gets_a_datagram_a_call(port: Port) -> None:
    refusing, other = RecordingSocket(refuse_segments=errno.EIO), RecordingSocket()
    port.paths._send(refusing, ("127.0.0.1", 9), [bytes(500)] * 3)  # type: ignore[arg-type]
    assert refusing.calls == [([500], None)] * 3  # resent one by one, nothing lost
    port.paths._send(refusing, ("127.0.0.1", 9), [bytes(500)] * 2)  # type: ignore[arg-type]
    assert refusing.calls == [([500], None)] * 5
    port.paths._send(other, ("127.0.0.1", 10), [bytes(500)] * 2)  # type: ignore[arg-type]
    assert other.calls == [([500, 500], 500)] and port.paths.segmenting


def test_a_kernel_without_segmentation_turns_it_off_for_every_path(port: Port) -> None:
    sock = RecordingSocket(refuse_segments=errno.ENOPROTOOPT)
    port.paths._send(sock, ("127.0.0.1", 9), [bytes(500)] * 3)  # type: ignore[arg-type]
    assert not port.paths.segmenting
    assert sock.calls == [([500], None)] * 3


def test_sends_during_a_wake_up_are_held_and_reach_the_endpoint_in_order(port: Port) -> None:
    media = port.listener.address()
    sizes = [1128, 1128, 1128, 700, 1128, 1128, 90]
    with _client() as alice, _client() as bob, _client() as carol:
        for client in (alice, bob):
            port.paths.changed(None, client.getsockname())

        def forward(data: bytes, address: Address) -> None:
            for number, size in enumerate(sizes):
                port.paths.send(bytes([number]) * size, alice.getsockname())
            port.paths.send(b"to bob", bob.getsockname())
            port.paths.changed(bob.getsockname(), None)  # bob leaves: his datagram is dropped
            port.paths.send(b"to carol", carol.getsockname())  # no path: sent at once
            assert carol.recvfrom(100) == (b"to carol", media)
            assert port.paths._held

        port.paths.received = forward
        port.poller._sockets = {fd: (recv, forward)
                                for fd, (recv, _) in port.poller._sockets.items()}
        alice.sendto(b"media", media)
        port.poller.doRead()
        assert not port.paths._held
        got = [alice.recvfrom(2000) for _ in sizes]
        assert [(len(data), data[0], source) for data, source in got] == [
            (size, number, media) for number, size in enumerate(sizes)]
        bob.settimeout(0.2)
        with pytest.raises(TimeoutError):
            bob.recvfrom(100)
        port.paths.send(b"outside a wake-up", alice.getsockname())
        assert alice.recvfrom(100) == (b"outside a wake-up", media)


def test_this_kernel_segments_and_the_paths_know_it(port: Port) -> None:
    assert segmentation_supported()  # Linux 4.18+, as every supported Debian has
    assert port.paths.segmenting
