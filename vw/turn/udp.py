"""Relay ports: bound UDP sockets read by a :class:`~vw.common.poller.DatagramPoller`, leaner
than Twisted's UDP ports.

An allocation opens and closes one of these; Twisted's :class:`twisted.internet.udp.Port`
would log two lines for each and check every address it writes to, which on a TURN server's
relay path costs more than relaying the datagram.
"""

from __future__ import annotations

import socket

from vw.common.networks import family_of
from vw.common.poller import Address, DatagramPoller, Receiver

#: Receive buffer of a relay socket, in bytes (up to the kernel's net.core.rmem_max).
RECEIVE_BUFFER = 1024 * 1024


class RelaySocket:
    """A non-blocking UDP socket bound to ``address``; what arrives goes to ``received``."""

    def __init__(self, poller: DatagramPoller, sock: socket.socket) -> None:
        self.poller = poller
        self.socket = sock

    @property
    def address(self) -> Address:
        """The (host, port) the socket is bound to."""
        host, port = self.socket.getsockname()[:2]
        return host, port

    @classmethod
    def bind(cls, poller: DatagramPoller, address: Address, received: Receiver) -> RelaySocket:
        """Bind a socket to ``address`` and start reading it; OSError if the port is taken."""
        sock = socket.socket(family_of(address[0]), socket.SOCK_DGRAM | socket.SOCK_NONBLOCK)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
            sock.bind(address)
        except OSError:
            sock.close()
            raise
        poller.add(sock, received)
        return cls(poller, sock)

    def send(self, data: bytes, address: Address) -> None:
        """Send a datagram; one the kernel refuses is dropped like any lost datagram."""
        try:
            self.poller.send(self.socket, data, address)
        except OSError:
            pass

    def close(self) -> None:
        """Stop reading and close the socket."""
        if self.socket.fileno() != -1:
            self.poller.remove(self.socket)
            self.socket.close()
