"""The datagram poller: many loopback sockets behind one reactor descriptor."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from twisted.python.failure import Failure

from vw.common import poller as poller_module
from vw.common.poller import READ_BATCH, DatagramPoller


class Reactor:
    """Records the readers added and removed."""

    def __init__(self) -> None:
        self.readers: set[object] = set()

    def addReader(self, reader: object) -> None:
        self.readers.add(reader)

    def removeReader(self, reader: object) -> None:
        self.readers.discard(reader)


def _udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    return sock


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    made = [_udp() for _ in range(4)]
    yield made
    for sock in made:
        sock.close()


def test_one_reader_for_all_sockets_while_any(sockets: list[socket.socket]) -> None:
    reactor = Reactor()
    poller = DatagramPoller(reactor, "test")
    assert not reactor.readers
    poller.add(sockets[0], lambda d, a: None)
    poller.add(sockets[1], lambda d, a: None)
    assert reactor.readers == {poller} and poller.fileno() >= 0
    poller.remove(sockets[0])
    assert reactor.readers == {poller}
    poller.remove(sockets[1])
    poller.remove(sockets[1])  # twice is harmless
    assert not reactor.readers


def test_every_ready_socket_is_drained(sockets: list[socket.socket]) -> None:
    poller, received = DatagramPoller(Reactor(), "test"), []
    first, second, sender = sockets[:3]
    poller.add(first, lambda d, a: received.append(("first", d, a)))
    poller.add(second, lambda d, a: received.append(("second", d, a)))
    source = sender.getsockname()
    for n in range(3):
        sender.sendto(b"a%d" % n, first.getsockname())
        sender.sendto(b"b%d" % n, second.getsockname())
    poller.doRead()
    assert sorted(received) == sorted(
        [("first", b"a%d" % n, source) for n in range(3)]
        + [("second", b"b%d" % n, source) for n in range(3)])
    assert [d for name, d, _ in received if name == "first"] == [b"a0", b"a1", b"a2"]
    poller.doRead()  # nothing waiting: returns at once
    assert len(received) == 6


def test_a_wake_up_reads_at_most_a_batch(sockets: list[socket.socket]) -> None:
    poller, received = DatagramPoller(Reactor(), "test"), []
    target, sender = sockets[:2]
    poller.add(target, lambda d, a: received.append(d))
    for n in range(READ_BATCH + 5):
        sender.sendto(b"%d" % n, target.getsockname())
    poller.doRead()
    assert len(received) == READ_BATCH
    poller.doRead()
    assert len(received) == READ_BATCH + 5


def test_a_handler_may_remove_a_socket_and_errors_are_contained(
    sockets: list[socket.socket], monkeypatch: pytest.MonkeyPatch
) -> None:
    poller, received, failures = DatagramPoller(Reactor(), "test"), [], []
    first, second, sender = sockets[:3]
    monkeypatch.setattr(poller_module.log, "failure", lambda *a, **k: failures.append(a))

    def first_handler(data: bytes, address: tuple[str, int]) -> None:
        received.append(data)
        poller.remove(second)
        raise RuntimeError("handler bug")

    poller.add(first, first_handler)
    poller.add(second, lambda d, a: received.append(d))
    sender.sendto(b"one", first.getsockname())
    sender.sendto(b"two", first.getsockname())
    poller.doRead()
    assert received == [b"one", b"two"] and len(failures) == 2


def test_connection_lost_closes_the_epoll(sockets: list[socket.socket]) -> None:
    poller = DatagramPoller(Reactor(), "test")
    poller.add(sockets[0], lambda d, a: None)
    poller.connectionLost(Failure(ConnectionError()))
    poller.remove(sockets[0])  # after shutdown: nothing to do
    with pytest.raises(ValueError):
        poller.fileno()


def test_after_reading_callbacks_run_once_a_wake_up_is_handled(
        sockets: list[socket.socket]) -> None:
    poller = DatagramPoller(Reactor(), "test")
    seen: list[tuple[str, bool]] = []
    poller.add(sockets[0], lambda data, address: seen.append(("datagram", poller.reading)))
    poller.after_reading(lambda: seen.append(("done", poller.reading)))
    poller.after_reading(lambda: 1 / 0)  # logged; the next wake-up still runs them
    for _ in range(2):
        sockets[1].sendto(b"x", sockets[0].getsockname())
    poller.doRead()
    poller.doRead()  # nothing ready: the callbacks run all the same
    assert seen == [("datagram", True), ("datagram", True), ("done", False), ("done", False)]
