"""The UDP listening port: bound at start, read through the poller, closed at stop."""

from __future__ import annotations

import socket

import pytest
from twisted.internet.error import CannotListenError

from tests.common.test_poller import Reactor
from vw.common.poller import DatagramPoller
from vw.common.udplistener import UdpListener


def test_bound_read_answered_and_closed() -> None:
    reactor, received = Reactor(), []
    poller = DatagramPoller(reactor, "test")
    listener = UdpListener(poller, 0, "127.0.0.1", lambda d, a: received.append((d, a)))
    listener.privilegedStartService()
    listener.startService()
    address = listener.address()
    assert address[1] != 0 and poller in reactor.readers
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
        client.bind(("127.0.0.1", 0))
        client.sendto(b"hello", address)
        poller.doRead()
        assert received == [(b"hello", client.getsockname())]
        listener.send(b"answer", client.getsockname())
        assert client.recvfrom(100) == (b"answer", address)
    listener.send(bytes(70000), ("127.0.0.1", 9))  # refused by the kernel: dropped
    listener.stopService()
    assert listener.socket is None and poller not in reactor.readers


def test_start_binds_when_not_started_privileged() -> None:
    listener = UdpListener(DatagramPoller(Reactor(), "test"), 0, "127.0.0.1", lambda d, a: None)
    listener.startService()
    assert listener.address()[1] != 0
    listener.stopService()


def test_a_taken_port_cannot_listen() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        listener = UdpListener(DatagramPoller(Reactor(), "test"), taken.getsockname()[1],
                               "127.0.0.1", lambda d, a: None)
        with pytest.raises(CannotListenError):
            listener.privilegedStartService()


def test_a_shared_port_still_refuses_a_second_listener() -> None:
    first = UdpListener(DatagramPoller(Reactor(), "test"), 0, "127.0.0.1", lambda d, a: None,
                        share_port=True)
    first.privilegedStartService()
    second = UdpListener(DatagramPoller(Reactor(), "test"), first.address()[1], "127.0.0.1",
                         lambda d, a: None, share_port=True)
    with pytest.raises(CannotListenError):
        second.privilegedStartService()
    first.stopService()
