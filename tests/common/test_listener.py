"""A TCP port several processes share: bound with SO_REUSEPORT, the first one checked free."""

from __future__ import annotations

import socket

import pytest
from twisted.internet.error import CannotListenError
from twisted.internet.protocol import ServerFactory
from twisted.internet.testing import MemoryReactorClock

from vw.common.listener import TCPListener, check_free


def listeners(port: int) -> int:
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in list(table)[1:]]
    return sum(1 for row in rows if row[1].endswith(f":{port:04X}") and row[3] == "0A")


def test_the_first_takes_a_free_port_and_others_share_it() -> None:
    first = TCPListener(MemoryReactorClock(), 0, ServerFactory(), "127.0.0.1", shared=True,
                            first=True)
    first.privilegedStartService()
    first.startService()
    port = first.port
    assert port != 0 and listeners(port) == 1
    second = TCPListener(MemoryReactorClock(), port, ServerFactory(), "127.0.0.1", shared=True)
    second.startService()
    assert listeners(port) == 2
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # the kernel queues it for one of them
    for server in (second, first):
        server.stopService()
        server.reactor.advance(0)
    assert listeners(port) == 0


def test_a_first_process_refuses_a_port_another_server_listens_on() -> None:
    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CannotListenError):
            check_free("127.0.0.1", port)
        server = TCPListener(MemoryReactorClock(), port, ServerFactory(), "127.0.0.1",
                             shared=True, first=True)
        with pytest.raises(CannotListenError):
            server.privilegedStartService()
        assert listeners(port) == 1


def test_the_port_is_free_again_once_every_server_stopped() -> None:
    first = TCPListener(MemoryReactorClock(), 0, ServerFactory(), "127.0.0.1", shared=True,
                            first=True)
    first.startService()
    port = first.port
    first.stopService()
    first.reactor.advance(0)
    assert check_free("127.0.0.1", port) == port
