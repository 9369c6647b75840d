"""Relay ports: bound UDP sockets read by the reactor, leaner than Twisted's UDP ports.

An allocation opens and closes one of these; Twisted's :class:`twisted.internet.udp.Port`
would log two lines for each and check every address it writes to, which on a TURN server's
relay path costs more than relaying the datagram.
"""

from __future__ import annotations

import socket
from collections.abc import Callable

from twisted.internet.interfaces import IReactorFDSet, IReadDescriptor
from twisted.python.failure import Failure
from zope.interface import implementer

Address = tuple[str, int]

#: The largest datagram read (a larger one is cut): media is MTU-sized.
MAX_DATAGRAM = 8192
#: Receive buffer of a relay socket, in bytes (up to the kernel's net.core.rmem_max).
RECEIVE_BUFFER = 1024 * 1024
#: Datagrams read per wake-up before the reactor serves other sockets.
READ_BATCH = 64


@implementer(IReadDescriptor)
class RelaySocket:
    """A non-blocking UDP socket bound to ``address``; what arrives goes to ``received``."""

    def __init__(self, reactor: IReactorFDSet, sock: socket.socket,
                 received: Callable[[bytes, Address], None]) -> None:
        self.reactor = reactor
        self.socket = sock
        self.received = received
        host, port = sock.getsockname()[:2]
        self.address: Address = (host, port)

    @classmethod
    def bind(cls, reactor: IReactorFDSet, address: Address,
             received: Callable[[bytes, Address], None]) -> RelaySocket:
        """Bind a socket to ``address`` and start reading it; OSError if the port is taken."""
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        relay = cls(reactor, sock, received)
        reactor.addReader(relay)
        return relay

    def fileno(self) -> int:
        return self.socket.fileno()

    def logPrefix(self) -> str:
        return "turn-relay"

    def doRead(self) -> None:
        recvfrom, received = self.socket.recvfrom, self.received
        for _ in range(READ_BATCH):
            try:
                data, address = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error reported for an earlier send: read on
                continue
            received(data, address[:2])

    def send(self, data: bytes, address: Address) -> None:
        """Send a datagram; one the kernel refuses is dropped like any lost datagram."""
        try:
            self.socket.sendto(data, address)
        except OSError:
            pass

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self.socket.fileno() != -1:
            self.reactor.removeReader(self)
            self.socket.close()

    def connectionLost(self, reason: Failure) -> None:
        """The reactor is done with this socket (it is shutting down)."""
        self.socket.close()
